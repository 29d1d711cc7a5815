package storage

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/vfs"
)

// syncDir makes the entries of dir (files created, renamed or removed in
// it) durable: syncing a file makes its content durable, not its name.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("open dir %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// maxDirDepth bounds the walk up from a dir to its first existing
// ancestor.
const maxDirDepth = 256

// mkdirDurable creates dir and any missing parents (mode 0700), and syncs
// the parent of each one it created, so that a crash cannot lose a dir
// that files were made durable in.
func mkdirDurable(fs vfs.FS, dir string) error {
	var missing []string
	for p := dir; len(missing) < maxDirDepth; {
		if _, err := fs.Stat(p); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		missing = append(missing, p)
		parent := fs.PathDir(p)
		if parent == p {
			break
		}
		p = parent
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// Top down: a child's entry is durable only once its parent is.
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(fs, fs.PathDir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}
