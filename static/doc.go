// Package static embeds the HUD's assets (embed.FS): hud.js, the one
// script module that applies the /ws protocol's snapshots and diffs and
// repaints what changed once per animation frame; hud.css; and the icon.
// The page uses system fonts and loads nothing from anywhere else: no CDN,
// no web font, no build step at run time. Version hashes the files for
// cache-busting URLs.
//
// It imports nothing but the standard library.
package static
