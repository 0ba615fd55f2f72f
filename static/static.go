package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sync"
)

// FS holds the HUD's assets: the script module, the stylesheet and the
// icon. They are served as they are; nothing is built at run time.
//
//go:embed hud.js hud.css favicon.svg
var FS embed.FS

var versionOnce = sync.OnceValue(func() string {
	h := sha256.New()
	_ = fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
})

// Version is a short hash of every embedded file. Pages add it to asset
// URLs (?v=...), so that a browser may cache an asset for good and still
// fetch the new one after an upgrade.
func Version() string { return versionOnce() }
