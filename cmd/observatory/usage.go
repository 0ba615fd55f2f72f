package main

import (
	"errors"
	"fmt"
)

// usageError is a command line the command refuses to run as given (a
// flag missing, or unsafe for the address), not a failure while running.
// main exits with status 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usagef returns a *usageError.
func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode is the status main exits with for run's error: 0 for none, 2
// for a usage error, 1 for any other.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}
