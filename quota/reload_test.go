package quota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWatcherReloadsOnChange walks a file through a valid change, an invalid
// one, a deletion and a re-creation, with readers calling Current all along
// (run with -race).
func TestWatcherReloadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	writeBudgetsFile(t, path, budgetsWithTPM(1000))
	logs := &reloadTestLog{}
	w, err := NewWatcher(path, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if got := watchedTPM(w); got != 1000 {
		t.Fatalf("initial tpm: got %d, want 1000", got)
	}
	w.Interval = 20 * time.Millisecond
	startReloadReaders(t, w)
	runWatcher(t, w)

	writeBudgetsFile(t, path, budgetsWithTPM(2000))
	waitForWatcher(t, "the new tpm", func() bool { return watchedTPM(w) == 2000 })
	if got := w.Reloads(); got != 1 {
		t.Errorf("Reloads: got %d, want 1", got)
	}

	writeBudgetsFile(t, path, "models:\n  m:\n    tpm: -5\n    rpm: lots\n")
	waitForWatcher(t, "the invalid file to be rejected", func() bool { return w.Failures() == 1 })
	if got := watchedTPM(w); got != 2000 {
		t.Errorf("after an invalid file: tpm %d, want the old 2000", got)
	}
	// Both problems are in the log, not just the first.
	for _, want := range []string{"budgets file rejected", "got -5", `got the string \"lots\"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitForWatcher(t, "the missing file to be logged", func() bool { return strings.Contains(logs.String(), "budgets file unreadable") })
	if got := watchedTPM(w); got != 2000 {
		t.Errorf("after deletion: tpm %d, want the old 2000", got)
	}

	writeBudgetsFile(t, path, budgetsWithTPM(3000))
	waitForWatcher(t, "the re-created file", func() bool { return watchedTPM(w) == 3000 })
	if got, want := w.Reloads(), int64(2); got != want {
		t.Errorf("Reloads: got %d, want %d", got, want)
	}
	if got, want := w.Failures(), int64(1); got != want {
		t.Errorf("Failures: got %d, want %d", got, want)
	}
	if n := strings.Count(logs.String(), "budgets file unreadable"); n != 1 {
		t.Errorf("a missing file was logged %d times, want once", n)
	}
}

// TestWatcherKubernetesSymlinkSwap updates the file the way the kubelet
// updates a ConfigMap volume: the watched path is a symlink through ..data,
// and ..data is atomically replaced by a symlink to a new directory. The new
// file has the same size and modification time as the old, so only the
// content tells them apart.
func TestWatcherKubernetesSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	writeVersion := func(version, content string) {
		t.Helper()
		vdir := filepath.Join(dir, version)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(vdir, "budgets.yaml")
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2024_01_02_03_04_05.1", budgetsWithTPM(1000))
	mustSymlink(t, "..2024_01_02_03_04_05.1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "budgets.yaml")
	mustSymlink(t, filepath.Join("..data", "budgets.yaml"), path)

	w, err := NewWatcher(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w.Interval = 20 * time.Millisecond
	runWatcher(t, w)

	writeVersion("..2024_01_02_03_04_05.2", budgetsWithTPM(2000))
	mustSymlink(t, "..2024_01_02_03_04_05.2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2024_01_02_03_04_05.1")); err != nil {
		t.Fatal(err)
	}
	waitForWatcher(t, "the swapped ConfigMap", func() bool { return watchedTPM(w) == 2000 })
}

// TestWatcherWaitsForStableContent: a content is applied only when two polls
// in a row read it, so that a file caught while being rewritten in place
// (empty for an instant, which is a valid file with no budgets) never lifts
// the limits.
func TestWatcherWaitsForStableContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	writeBudgetsFile(t, path, budgetsWithTPM(1000))
	w, err := NewWatcher(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	writeBudgetsFile(t, path, "")
	w.poll()
	writeBudgetsFile(t, path, budgetsWithTPM(2000))
	w.poll()
	if got := watchedTPM(w); got != 1000 {
		t.Fatalf("after single reads of two contents: tpm %d, want the old 1000", got)
	}
	w.poll()
	if got := watchedTPM(w); got != 2000 {
		t.Fatalf("after a second read of the same content: tpm %d, want 2000", got)
	}
	if got := w.Reloads(); got != 1 {
		t.Errorf("Reloads: got %d, want 1 (the empty file was never applied)", got)
	}
	w.poll()
	if got := w.Reloads(); got != 1 {
		t.Errorf("an unchanged file was applied again: Reloads %d, want 1", got)
	}
}

// TestWatcherReload: an explicit Reload applies at once and returns the
// problems of an invalid file.
func TestWatcherReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	writeBudgetsFile(t, path, budgetsWithTPM(1000))
	w, err := NewWatcher(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err != nil || w.Reloads() != 0 {
		t.Errorf("Reload of an unchanged file: %v, Reloads %d; want nil, 0", err, w.Reloads())
	}

	writeBudgetsFile(t, path, "models:\n  m:\n    tpm: -1\n")
	err = w.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 3: models[\"m\"].tpm: must be a non-negative integer, got -1") {
		t.Errorf("Reload of an invalid file: got %v, want the field error", err)
	}
	if w.Failures() != 1 || watchedTPM(w) != 1000 {
		t.Errorf("after a rejected Reload: Failures %d, tpm %d; want 1, 1000", w.Failures(), watchedTPM(w))
	}

	writeBudgetsFile(t, path, budgetsWithTPM(2000))
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if w.Reloads() != 1 || watchedTPM(w) != 2000 {
		t.Errorf("after Reload: Reloads %d, tpm %d; want 1, 2000", w.Reloads(), watchedTPM(w))
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Reload(); err == nil {
		t.Error("Reload of a missing file: got nil, want an error")
	}
	if watchedTPM(w) != 2000 {
		t.Errorf("after a failed Reload: tpm %d, want 2000", watchedTPM(w))
	}
}

// TestNewWatcherRefusesBadFile: the gateway must not start without budgets.
func TestNewWatcherRefusesBadFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	writeBudgetsFile(t, bad, "models:\n  m:\n    tpm: -1\n")
	if _, err := NewWatcher(bad, nil); err == nil || !strings.Contains(err.Error(), "got -1") {
		t.Errorf("invalid file: got %v, want the field error", err)
	}
	if _, err := NewWatcher(filepath.Join(dir, "absent.yaml"), nil); err == nil {
		t.Error("missing file: got nil, want an error")
	}
}

func budgetsWithTPM(tpm int64) string {
	return fmt.Sprintf("models:\n  m:\n    tpm: %d\n", tpm)
}

func watchedTPM(w *Watcher) int64 {
	return w.Current().Models["m"].Limits.TPM
}

// writeBudgetsFile replaces path atomically (write, then rename), as careful
// tools do.
func writeBudgetsFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// runWatcher runs w.Run until the test ends, and waits for it to return.
func runWatcher(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// startReloadReaders calls Current in a loop until the test ends, as request
// goroutines do, so that -race checks it against reloads.
func startReloadReaders(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if c := w.Current(); c == nil {
					t.Error("Current returned nil")
					return
				}
				_, _ = w.Current().Model("m")
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// waitForWatcher polls cond with a generous bound: the test asserts what
// happens, not how fast.
func waitForWatcher(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reloadTestLog collects a Watcher's log lines.
type reloadTestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *reloadTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *reloadTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *reloadTestLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, nil))
}

// TestWatcherAccept: a config its Accept hook refuses is not put in force,
// and the next acceptable edit is.
func TestWatcherAccept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	writeBudgetsFile(t, path, budgetsWithTPM(1000))
	w, err := NewWatcher(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	w.Accept = func(c *Config) error {
		if c.Models["m"].Limits.TPM == 3000 {
			return errors.New("secret SEARCH_SECRET is not set")
		}
		return nil
	}
	writeBudgetsFile(t, path, budgetsWithTPM(3000))
	if err := w.Reload(); err == nil || !strings.Contains(err.Error(), "SEARCH_SECRET") {
		t.Errorf("Reload refused by Accept: got %v, want its error", err)
	}
	if watchedTPM(w) != 1000 || w.Failures() != 1 {
		t.Errorf("after a refused Reload: tpm %d, Failures %d; want 1000, 1", watchedTPM(w), w.Failures())
	}
	writeBudgetsFile(t, path, budgetsWithTPM(2000))
	if err := w.Reload(); err != nil || watchedTPM(w) != 2000 {
		t.Errorf("Reload of an accepted file: %v, tpm %d; want nil, 2000", err, watchedTPM(w))
	}
}
