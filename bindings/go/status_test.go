package vx_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"vxdb.dev/vx"
)

// installedHeader finds the vx.h the package was built against, through the
// same pkg-config module cgo used.
func installedHeader(t *testing.T) string {
	t.Helper()
	var lastErr error
	for _, module := range []string{"vx", "vx-static"} {
		out, err := exec.Command("pkg-config", "--variable=includedir", module).Output()
		if err != nil {
			lastErr = err
			continue
		}
		path := filepath.Join(strings.TrimSpace(string(out)), "vx.h")
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	t.Fatalf("cannot find the installed vx.h through pkg-config: %v", lastErr)
	return ""
}

// Every code the header declares is in AllStatuses and nothing else is, so a
// code added in C without a Go constant and sentinel fails here.
func TestAllStatusesMatchTheHeader(t *testing.T) {
	header, err := os.ReadFile(installedHeader(t))
	if err != nil {
		t.Fatal(err)
	}
	declared := map[vx.Status]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(VX_STATUS_\w+) = (-?\d+),`).FindAllSubmatch(header, -1) {
		code, err := strconv.ParseInt(string(m[2]), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		declared[vx.Status(code)] = string(m[1])
	}
	if len(declared) == 0 {
		t.Fatal("no VX_STATUS_* codes found in the header")
	}
	seen := map[vx.Status]bool{}
	for _, s := range vx.AllStatuses {
		if _, ok := declared[s]; !ok || seen[s] {
			t.Errorf("AllStatuses has %d, which the header lacks or which is listed twice", int32(s))
		}
		seen[s] = true
	}
	for code, name := range declared {
		if !seen[code] {
			t.Errorf("%s (%d) is not in AllStatuses", name, int32(code))
		}
	}
	if vx.AllStatuses[0] != vx.StatusOK {
		t.Errorf("AllStatuses starts with %d, not StatusOK", int32(vx.AllStatuses[0]))
	}
}
