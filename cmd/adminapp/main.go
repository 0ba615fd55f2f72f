package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sagewai/observatory/adminapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "adminapp:", err)
		os.Exit(1)
	}
}

// run is the whole command: flags, the app, the HTTP server until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("adminapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", env("ADMINAPP_LISTEN", "127.0.0.1:8080"), "address to serve the app on (env ADMINAPP_LISTEN)")
	obsURL := fs.String("observatory-url", env("ADMINAPP_OBSERVATORY_URL", "http://127.0.0.1:3001"), "Observatory's base URL, for its API (env ADMINAPP_OBSERVATORY_URL)")
	publicURL := fs.String("observatory-public-url", env("ADMINAPP_OBSERVATORY_PUBLIC_URL", ""), "Observatory's base URL as users' browsers reach it, for the iframe; empty: --observatory-url (env ADMINAPP_OBSERVATORY_PUBLIC_URL)")
	obsUser := fs.String("observatory-user", env("ADMINAPP_OBSERVATORY_USER", "admin"), "the Observatory admin the app logs in as to mint embed tokens (env ADMINAPP_OBSERVATORY_USER)")
	credFile := fs.String("credential-file", env("ADMINAPP_CREDENTIAL_FILE", ""), "file holding that admin's password; else env ADMINAPP_OBSERVATORY_PASSWORD holds it (env ADMINAPP_CREDENTIAL_FILE)")
	usersFile := fs.String("users-file", env("ADMINAPP_USERS_FILE", ""), `JSON list of the app's users, [{"name":"alice","password":"...","project":"acme"}] (env ADMINAPP_USERS_FILE)`)
	sessionKeyFile := fs.String("session-key-file", env("ADMINAPP_SESSION_KEY_FILE", ""), "file of at least 32 bytes that signs sign-in cookies; empty: a random key, sign-ins end with the process (env ADMINAPP_SESSION_KEY_FILE)")
	ttlDefault := adminapp.DefaultTTL
	if v := env("ADMINAPP_EMBED_TTL", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("ADMINAPP_EMBED_TTL=%q: %w", v, err)
		}
		ttlDefault = d
	}
	ttl := fs.Duration("embed-ttl", ttlDefault, fmt.Sprintf("lifetime of each embed token, %s to %s; the page renews it at four fifths (env ADMINAPP_EMBED_TTL)", adminapp.MinTTL, adminapp.MaxTTL))
	title := fs.String("title", env("ADMINAPP_TITLE", "Admin"), "the app's name in its pages (env ADMINAPP_TITLE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	password := strings.TrimSpace(getenv("ADMINAPP_OBSERVATORY_PASSWORD"))
	if *credFile != "" {
		b, err := os.ReadFile(*credFile)
		if err != nil {
			return fmt.Errorf("--credential-file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if password == "" {
		return errors.New("the Observatory admin password is required: --credential-file FILE or ADMINAPP_OBSERVATORY_PASSWORD")
	}
	if *usersFile == "" {
		return errors.New("--users-file is required (a JSON list of {name, password, project})")
	}
	users, err := readUsers(*usersFile)
	if err != nil {
		return err
	}
	var sessionKey []byte
	if *sessionKeyFile != "" {
		if sessionKey, err = os.ReadFile(*sessionKeyFile); err != nil {
			return fmt.Errorf("--session-key-file: %w", err)
		}
	}

	log := slog.New(slog.NewJSONHandler(stderr, nil))
	app, err := adminapp.New(adminapp.Config{
		ObservatoryURL: *obsURL, PublicURL: *publicURL,
		AdminUser: *obsUser, AdminPassword: password,
		Users: users, TTL: *ttl, SessionKey: sessionKey, Title: *title, Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler: app, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
	}
	fmt.Fprintf(stdout, "adminapp: serving http://%s for %d users; Observatory must list the origin browsers use for it in serve --embed-origins\n", ln.Addr(), len(users))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// readUsers reads the users file: a JSON list, strictly.
func readUsers(path string) ([]adminapp.User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--users-file: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	var users []adminapp.User
	if err := dec.Decode(&users); err != nil {
		return nil, fmt.Errorf("--users-file %s: %w", path, err)
	}
	return users, nil
}
