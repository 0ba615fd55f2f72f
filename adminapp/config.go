package adminapp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// Embed token lifetimes, as Observatory's embed-tokens route takes them.
const (
	DefaultTTL = 15 * time.Minute
	MinTTL     = time.Minute
	MaxTTL     = time.Hour
)

// DefaultSessionTTL is how long a sign-in to the app lasts.
const DefaultSessionTTL = 8 * time.Hour

// User is one demo user of the app: a name, a password and the one
// Observatory project whose HUD the app shows them.
type User struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Project  string `json:"project"`
}

// Config configures an App. Zero values mean the defaults given.
type Config struct {
	// ObservatoryURL is where the app calls Observatory's API,
	// scheme://host[:port] (required). It must be a name Observatory
	// answers (its --public-url, or a loopback name on loopback).
	ObservatoryURL string
	// PublicURL is the Observatory address users' browsers reach, for the
	// iframe (ObservatoryURL). They differ when the app talks to
	// Observatory on an internal name.
	PublicURL string
	// AdminUser and AdminPassword are the Observatory admin login the app
	// mints embed tokens with ("admin"; the password is required).
	AdminUser     string
	AdminPassword string
	// Users are the people who may sign in to the app (at least one).
	Users []User
	// TTL is the lifetime of each embed token (DefaultTTL), from MinTTL to
	// MaxTTL. RefreshAfter is when the page mints the next one (four
	// fifths of TTL), so that a frame is reloaded before its token expires.
	TTL          time.Duration
	RefreshAfter time.Duration
	// SessionTTL is how long a sign-in lasts (DefaultSessionTTL).
	SessionTTL time.Duration
	// SessionKey signs the app's session cookies: at least 32 bytes, or
	// empty for a random key (sign-ins then end when the process does).
	SessionKey []byte
	// Title names the app in its pages ("Admin").
	Title string
	// Client calls Observatory (a client with a 10 s timeout).
	Client *http.Client
	// Logger receives the access log and the app's events
	// (slog.Default()). Tokens never reach it.
	Logger *slog.Logger
	// Now is the app's clock (time.Now): sessions' issue and expiry.
	Now func() time.Time
}

var (
	userNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	projectIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
)

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	api, err := baseURL("ObservatoryURL", c.ObservatoryURL)
	if err != nil {
		return c, err
	}
	c.ObservatoryURL = api
	if c.PublicURL == "" {
		c.PublicURL = c.ObservatoryURL
	}
	if c.PublicURL, err = baseURL("PublicURL", c.PublicURL); err != nil {
		return c, err
	}
	if c.AdminUser == "" {
		c.AdminUser = "admin"
	}
	if c.AdminPassword == "" {
		return c, errors.New("adminapp: the Observatory admin password is required")
	}
	if len(c.Users) == 0 {
		return c, errors.New("adminapp: at least one user is required")
	}
	seen := map[string]bool{}
	for i, u := range c.Users {
		switch {
		case !userNameRE.MatchString(u.Name):
			return c, fmt.Errorf("adminapp: user %d: name %q: want 1 to 64 letters, digits, '.', '_', '@' or '-'", i+1, u.Name)
		case seen[u.Name]:
			return c, fmt.Errorf("adminapp: user %q is listed twice", u.Name)
		case u.Password == "":
			return c, fmt.Errorf("adminapp: user %q has no password", u.Name)
		case !projectIDRE.MatchString(u.Project):
			return c, fmt.Errorf("adminapp: user %q: project %q is not an Observatory project id", u.Name, u.Project)
		}
		seen[u.Name] = true
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < MinTTL || c.TTL > MaxTTL {
		return c, fmt.Errorf("adminapp: embed token ttl %s: want %s to %s", c.TTL, MinTTL, MaxTTL)
	}
	if c.RefreshAfter == 0 {
		c.RefreshAfter = c.TTL * 4 / 5
	}
	if c.RefreshAfter < 0 || c.RefreshAfter >= c.TTL {
		return c, fmt.Errorf("adminapp: refresh after %s: want more than 0 and less than the ttl %s", c.RefreshAfter, c.TTL)
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	switch {
	case len(c.SessionKey) == 0:
		c.SessionKey = make([]byte, 32)
		_, _ = rand.Read(c.SessionKey) // never fails (crypto/rand)
	case len(c.SessionKey) < 32:
		return c, errors.New("adminapp: the session key must have at least 32 bytes")
	}
	if c.Title == "" {
		c.Title = "Admin"
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// baseURL checks that v is scheme://host[:port] with nothing after it and
// returns it without a trailing slash.
func baseURL(name, v string) (string, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("adminapp: %s %q: want http(s)://host[:port]", name, v)
	}
	return u.Scheme + "://" + u.Host, nil
}
