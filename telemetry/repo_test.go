package telemetry_test

import (
	"os"
	"path/filepath"
)

// readRepoFile reads a file by its path from the repository root (tests
// run in the package directory).
func readRepoFile(path string) ([]byte, error) {
	return os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
}
