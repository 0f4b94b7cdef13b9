package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestOwner(t *testing.T) {
	OwnerFile = filepath.Join(t.TempDir(), "owner")
	write := func(pid int, dir string) {
		if err := os.WriteFile(OwnerFile, []byte(fmt.Sprintf("%d %s\n", pid, dir)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckOwner("/a"); err != nil {
		t.Fatalf("no owner file: %v", err)
	}
	// A live process that is not a lab runtime (this test, standing for a
	// recycled pid) holds nothing.
	write(os.Getpid(), "/b")
	if o, ok := ReadOwner(); ok {
		t.Fatalf("a live non-runtime pid is an owner: %+v", o)
	}
	if err := CheckOwner("/a"); err != nil {
		t.Fatalf("owner file of a non-runtime pid: %v", err)
	}
	// A dead runtime's record is released by a down of any lab.
	write(1<<30, "/b")
	Release("/a")
	if _, err := os.Stat(OwnerFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Release after the owner died left the file: %v", err)
	}
}
