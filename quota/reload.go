package quota

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often Watcher.Run reads the budgets file when
// Watcher.Interval is zero.
const DefaultReloadInterval = time.Second

// Watcher keeps the current Config of a budgets file, reloading it when the
// file changes. Counters live in the stores, keyed by pool id, so a reload
// loses no usage: a model keeps its pool as long as its id is unchanged.
type Watcher struct {
	// Interval is how often Run reads the file; zero means
	// DefaultReloadInterval. Set it before calling Run.
	Interval time.Duration
	// Accept, when set, is shown every valid new config before it is put
	// in force, and may refuse it: the gateway resolves the tenants'
	// secrets here, so that a file naming a secret that cannot be read
	// keeps the old config (tenants and budgets together) rather than
	// half of the new one. Set it before calling Run.
	Accept func(*Config) error

	path   string
	logger *slog.Logger
	cur    atomic.Pointer[Config]

	reloads  atomic.Int64
	failures atomic.Int64

	mu         sync.Mutex // serializes polls: the fields below
	applied    [sha256.Size]byte
	seen       [sha256.Size]byte // content last judged, applied or rejected
	pending    [sha256.Size]byte // content read once, applied when read again unchanged
	hasPending bool
	readErr    string // the last read error logged, so that it is logged once, not every poll
}

// NewWatcher loads path once. An unreadable or invalid file is an error: the
// gateway must not start with a broken file, which would leave every model
// unlimited. A nil logger means slog.Default().
func NewWatcher(path string, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.Default()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading budgets file: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("budgets file %s: %w", path, err)
	}
	w := &Watcher{path: path, logger: logger}
	w.cur.Store(cfg)
	w.applied = sha256.Sum256(data)
	w.seen = w.applied
	return w, nil
}

// Current returns the config in force; never nil. It is one atomic load, safe
// for concurrent use on every request.
func (w *Watcher) Current() *Config { return w.cur.Load() }

// Reloads counts the changed files that were applied.
func (w *Watcher) Reloads() int64 { return w.reloads.Load() }

// Failures counts the changed files that were rejected as invalid.
func (w *Watcher) Failures() int64 { return w.failures.Load() }

// Run polls the file every Interval until ctx ends. A changed, valid file
// replaces the config; an invalid one is logged with all its errors and the
// old config stays in force; a missing or unreadable file keeps the old
// config too, and is logged once.
//
// Changes are detected by a hash of the content, not by modification time:
// a Kubernetes ConfigMap volume updates by swapping the ..data symlink to a
// new directory, so the path's own metadata does not change. A new content
// is applied only once two reads in a row return it. A file being rewritten
// in place is briefly empty or cut short, and an empty file is a valid one
// with no budgets: applying it even for one Interval would lift every limit.
// A real change therefore takes effect after one to two Intervals.
func (w *Watcher) Run(ctx context.Context) {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}

// poll reads the file once and applies a content seen unchanged twice.
func (w *Watcher) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, ok := w.read()
	if !ok {
		return
	}
	sum := sha256.Sum256(data)
	switch {
	case sum == w.seen:
		w.hasPending = false
	case !w.hasPending || sum != w.pending:
		w.pending, w.hasPending = sum, true
	default:
		w.hasPending = false
		_ = w.apply(data, sum)
	}
}

// Reload reads the file now and applies it if it changed, without the
// second read Run waits for: for an explicit request, such as SIGHUP, from
// someone who knows the file is complete. It returns the file's problems
// when it is rejected (the old config stays in force, as with Run).
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		return fmt.Errorf("reading budgets file: %w", err)
	}
	w.hasPending = false
	return w.apply(data, sha256.Sum256(data))
}

// read reads the file, logging a failure once rather than every Interval.
func (w *Watcher) read() ([]byte, bool) {
	data, err := os.ReadFile(w.path)
	if err != nil {
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.logger.Warn("budgets file unreadable; the config in force stays", "path", w.path, "error", msg)
		}
		return nil, false
	}
	if w.readErr != "" {
		w.readErr = ""
		w.logger.Info("budgets file readable again", "path", w.path)
	}
	return data, true
}

// apply parses data and puts it in force if valid. w.mu is held.
func (w *Watcher) apply(data []byte, sum [sha256.Size]byte) error {
	w.seen = sum
	if sum == w.applied { // e.g. a rejected edit reverted
		return nil
	}
	cfg, err := ParseConfig(data)
	if err == nil && w.Accept != nil {
		err = w.Accept(cfg)
	}
	if err != nil {
		w.failures.Add(1)
		w.logger.Error("budgets file rejected; the config in force stays", "path", w.path, "errors", configErrorList(err))
		return fmt.Errorf("budgets file %s: %w", w.path, err)
	}
	w.cur.Store(cfg)
	w.applied = sum
	w.reloads.Add(1)
	attrs := []any{"path", w.path, "models", len(cfg.Models), "default_model", cfg.Default != nil, "tenants", len(cfg.Tenants)}
	if len(cfg.Models) == 0 && cfg.Default == nil {
		w.logger.Warn("budgets file reloaded with no budgets: every model is unlimited", attrs...)
	} else {
		w.logger.Info("budgets file reloaded", attrs...)
	}
	return nil
}

// configErrorList splits an errors.Join into its messages, so that a JSON log
// shows one array element per problem.
func configErrorList(err error) []string {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range joined.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}
