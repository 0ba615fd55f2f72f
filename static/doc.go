// Package static embeds the HUD's JavaScript, CSS, fonts and icons
// (embed.FS), so the page needs no CDN and no build step at run time.
// It imports nothing but the standard library.
package static
