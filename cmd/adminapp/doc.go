// Command adminapp runs the example admin app of package adminapp: its
// own sign-in for a list of demo users, and a page that frames each
// user's project HUD from Observatory with an embed token it mints on the
// server side (docs/embedding.md).
//
// main builds a signal context and calls run; run parses the flags (each
// has an ADMINAPP_* environment twin; secrets come from files or the
// environment, never the command line), serves the app until the context
// ends, then shuts the server down under a fresh timeout. It imports
// adminapp and the standard library.
package main
