// The admin app's page: it keeps the framed HUD on a valid embed token.
// Tokens are minted by the app's server (POST /embed/refresh), never here:
// the page only puts the address it gets into the frame.
//
// It mints the next token before the current one expires (the server says
// when, data-refresh-in-ms and refresh_in_ms), and at once when the HUD
// reports through window.postMessage that its token was refused (expired
// or revoked while the page slept, say). The HUD then shows its banner
// until the new frame loads.

const frame = document.getElementById('hud');
const statusEl = document.getElementById('hud-status');
const hudOrigin = frame.dataset.observatoryOrigin;
let timer = 0;
let inFlight = null;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(() => refresh('scheduled'), Math.max(1000, ms));
}

function say(msg) { statusEl.textContent = msg; }

// refresh asks the server for a new embed token of the signed-in user's
// project and loads the frame with it. Calls while one is under way share it.
function refresh(reason) {
  if (inFlight) return inFlight;
  if (reason === 'refused') say('The live view\u2019s access expired; reconnecting\u2026');
  inFlight = (async () => {
    try {
      const res = await fetch('/embed/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ reason }),
        credentials: 'same-origin',
      });
      if (res.status === 401) {
        location.assign('/signin');
        return;
      }
      if (!res.ok) {
        say('Could not renew the live view (' + res.status + '); retrying in 30 s.');
        schedule(30000);
        return;
      }
      const j = await res.json();
      frame.src = j.url;
      say('');
      schedule(j.refresh_in_ms);
    } catch (err) {
      say('Could not reach the app; retrying in 30 s.');
      schedule(30000);
    } finally {
      inFlight = null;
    }
  })();
  return inFlight;
}

// The HUD says {type: 'observatory:embed', state: 'token-refused'} when its
// stream ends with 4401. Only the framed HUD is listened to.
window.addEventListener('message', (ev) => {
  if (ev.origin !== hudOrigin || ev.source !== frame.contentWindow) return;
  const d = ev.data;
  if (d && d.type === 'observatory:embed' && d.state === 'token-refused') refresh('refused');
});

document.getElementById('reconnect').addEventListener('click', () => refresh('manual'));
schedule(Number(frame.dataset.refreshInMs));
