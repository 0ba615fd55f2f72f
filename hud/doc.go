// Package hud holds the templ components of the Iron Man HUD served at /hud:
// pure functions of fleet values, rendered by web for the first paint and
// then kept live by the /ws stream. It imports fleet and templ only.
package hud
