package web

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certLoader serves the certificate of a certificate and a key file
// (PEM), and reads them again when either changes, so that a renewed
// certificate (cert-manager, certbot) is served from the next handshake
// on without a restart. A pair that does not load (a renewal half
// written) is logged and the last good one is served meanwhile.
type certLoader struct {
	certFile, keyFile string
	log               *slog.Logger

	// mu guards cert, the stamps it was read at, and those of the last
	// pair that did not load (tried again only once the files change).
	mu       sync.Mutex
	cert     *tls.Certificate
	certSeen fileStamp
	keySeen  fileStamp
	certBad  fileStamp
	keyBad   fileStamp
}

// fileStamp is what says a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// newCertLoader loads the pair once: a pair that does not load is an
// error at start.
func newCertLoader(certFile, keyFile string, log *slog.Logger) (*certLoader, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("tls: a certificate file and a key file are both required")
	}
	l := &certLoader{certFile: certFile, keyFile: keyFile, log: log}
	if err := l.reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// reload reads the pair if either file changed since it was last read.
func (l *certLoader) reload() error {
	cs, err := stampOf(l.certFile)
	if err != nil {
		return fmt.Errorf("tls: certificate: %w", err)
	}
	ks, err := stampOf(l.keyFile)
	if err != nil {
		return fmt.Errorf("tls: key: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cert != nil && (cs == l.certSeen && ks == l.keySeen || cs == l.certBad && ks == l.keyBad) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		l.certBad, l.keyBad = cs, ks
		return fmt.Errorf("tls: %w", err)
	}
	l.cert, l.certSeen, l.keySeen = &cert, cs, ks
	return nil
}

// get is tls.Config.GetCertificate.
func (l *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if err := l.reload(); err != nil {
		l.log.Warn("the TLS certificate could not be read again; serving the last one", "event", "tls.reload_failed", "error", err.Error())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cert, nil
}
