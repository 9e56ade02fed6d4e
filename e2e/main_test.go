package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// binDir holds the binaries built for this test run; TestMain removes it.
var binDir string

// TestMain gives the run a directory for the binaries it builds, and
// removes it afterwards.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "quotagate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// gatewayBinary builds cmd/gateway once per test run, on first use, so that
// running a single unrelated test costs no build. It is a plain build, not
// -race: the replicas' speed shapes the load, and the race detector already
// covers the same code in the proxy and quota package tests.
func gatewayBinary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(binDir, "gateway")
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goTool, "build", "-o", bin, "github.com/quotagate/quotagate/cmd/gateway")
		cmd.Dir = ".." // the module root: this package is e2e/
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/gateway: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}
