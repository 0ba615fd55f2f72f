package auth

import (
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// MaxNameSize and MaxPasswordSize bound login input; bcrypt itself reads at
// most 72 bytes of a password and refuses longer ones.
const (
	MaxNameSize     = 128
	MaxPasswordSize = 72
)

// User is one account that may log in.
type User struct {
	Name    string
	Role    string
	Project string // for RoleProject
	hash    []byte
}

// Users is a fixed set of accounts with bcrypt-hashed passwords.
type Users struct {
	cost  int
	users map[string]User
	// dummy is compared against when the name is unknown, so that a login
	// for a missing user costs the same time as one with a wrong password.
	dummy []byte
}

// NewUsers returns an empty set hashing with cost (0 means bcrypt.DefaultCost).
func NewUsers(cost int) (*Users, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	dummy, err := bcrypt.GenerateFromPassword(secret, cost)
	if err != nil {
		return nil, fmt.Errorf("auth: users: %w", err)
	}
	return &Users{cost: cost, users: map[string]User{}, dummy: dummy}, nil
}

// Add hashes password and adds the account. It is meant for set-up only:
// Users is not safe to modify while it is being read.
func (u *Users) Add(name, password, role, project string) error {
	if !ValidSubject(name) {
		return fmt.Errorf("auth: add user: name must have 1 to %d bytes and no control characters", MaxNameSize)
	}
	if password == "" || len(password) > MaxPasswordSize {
		return fmt.Errorf("auth: add user %q: password must have 1 to %d bytes", name, MaxPasswordSize)
	}
	if _, dup := u.users[name]; dup {
		return fmt.Errorf("auth: add user %q: already exists", name)
	}
	if err := ValidateRole(role, project); err != nil {
		return fmt.Errorf("auth: add user %q: %w", name, err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), u.cost)
	if err != nil {
		return fmt.Errorf("auth: add user %q: %w", name, err)
	}
	u.users[name] = User{Name: name, Role: role, Project: project, hash: h}
	return nil
}

// ErrBadCredentials is returned by Authenticate for an unknown name or a
// wrong password, without saying which.
var ErrBadCredentials = errors.New("bad credentials")

// Authenticate returns the account if password is its password. It takes
// about one bcrypt comparison whether or not the name exists.
func (u *Users) Authenticate(name, password string) (User, error) {
	usr, ok := u.users[name]
	hash := usr.hash
	if !ok {
		hash = u.dummy
	}
	if len(password) > MaxPasswordSize {
		password = password[:MaxPasswordSize] // compare anyway, and fail below
		ok = false
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
		return User{}, ErrBadCredentials
	}
	return usr, nil
}
