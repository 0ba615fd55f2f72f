package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthcheckCmd runs `observatory healthcheck`: GET --url and exit 0 on
// 200, non-zero otherwise. Container images without curl (distroless) use
// it as their HEALTHCHECK.
func healthcheckCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envDefault(getenv, "OBSERVATORY_HEALTHCHECK_URL", "http://127.0.0.1:3001/readyz"), "the probe to ask (env OBSERVATORY_HEALTHCHECK_URL)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	insecure := fs.Bool("insecure", envDefault(getenv, "OBSERVATORY_HEALTHCHECK_INSECURE", "") == "true",
		"do not verify the server's TLS certificate: for a probe of a server's own https address by IP, whose certificate names its public host (env OBSERVATORY_HEALTHCHECK_INSECURE=true)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("healthcheck: unexpected arguments %q", fs.Args())
	}
	if *timeout <= 0 {
		return errors.New("healthcheck: want a positive --timeout")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	client := http.DefaultClient
	if *insecure {
		// The probe sends no credential and reads only a status.
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintf(stdout, "%s: %s\n", *url, resp.Status)
	return nil
}
