// Package hud holds the templ components of the Iron Man HUD served at /hud:
// pure functions of fleet values, rendered by web for the first paint and
// then kept live in the browser by static/hud.js over the /ws stream.
//
// It owns three things the script mirrors exactly, so that the first paint
// and the live page agree to the character and to the pixel: the markup of
// every row (the script clones the <template> rows the page carries), the
// formatting of every figure (format.go, fmt* in hud.js), and the topology
// geometry (layout.go, place() in hud.js). The browser tests in
// hud/browser check all three against the fold.
//
// Every live widget carries the data-testid hook of DESIGN §6, whose text
// is the figure shown. Generated *_templ.go files are committed; `make
// templ-check` fails when they are stale.
//
// It imports fleet and templ only.
package hud
