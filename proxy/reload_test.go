package proxy_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/quotagate/quotagate/quota"
)

// TestBudgetReloadKeepsCounters: raising a budget in the file takes effect
// without a restart, and what was already spent stays counted.
func TestBudgetReloadKeepsCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budgets.yaml")
	write := func(tpm int) {
		t.Helper()
		if err := os.WriteFile(path, []byte("models:\n  "+haiku+":\n    tpm: "+strconv.Itoa(tpm)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(300)
	w, err := quota.NewWatcher(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Interval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	h := newHarness(t, harnessOptions{budgets: "models: {}\n"})
	h.gateway.Budgets = w.Current
	var spent int
	for i := 0; ; i++ {
		resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(200)))
		h.waitLogs(t, i+1)
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		spent += intField(h.logLines(t)[i], "charged_tokens")
		if i > 20 {
			t.Fatal("tpm 300 never throttled")
		}
	}
	write(100000)
	waitFor(t, "the reload", func() bool { m, _ := w.Current().Model(haiku); return m.Limits.TPM == 100000 })
	resp := h.post(t, haikuPath+"/converse", "application/json", []byte(converseBody(200)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after raising the budget: status %d, want 200", resp.StatusCode)
	}
	rem, _ := strconv.Atoi(resp.Header.Get("X-Ratelimit-Remaining-Tokens"))
	if rem > 100000-spent-200 || rem < 100000-spent-300 {
		t.Errorf("remaining %d, want 100000 - %d spent before the reload - this reservation (~210)", rem, spent)
	}
}
