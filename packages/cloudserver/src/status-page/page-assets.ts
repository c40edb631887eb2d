/**
 * The status page itself: one HTML file, its style and its script, served from memory.
 * No framework and no outside resources (the CSP forbids them). Everything a device can
 * name (file names, labels, error messages) goes into the page as text, never as markup.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CloudBox server</title>
<link rel="icon" href="favicon.svg">
<link rel="stylesheet" href="page.css">
<script src="page.js" defer></script>
</head>
<body>
<header>
  <h1 id="cloud-name">CloudBox server</h1>
  <span id="feed" class="badge">connecting…</span>
</header>
<main>
  <section id="pairing" class="card">
    <h2>Pair a device</h2>
    <img id="qr" src="qr.svg" alt="Pairing QR code" width="220" height="220">
    <p>Scan the code, or run:</p>
    <code id="pair-command"></code>
    <p class="muted">Cloud ID <span id="cloud-id"></span></p>
  </section>
  <section id="sync" class="card">
    <h2>Sync</h2>
    <p id="sync-state" class="muted">Idle</p>
    <progress id="sync-progress" max="1" value="0"></progress>
    <p id="sync-detail"></p>
    <p class="muted">Received since start: <span id="received"></span></p>
  </section>
  <section id="storage" class="card">
    <h2>Storage</h2>
    <p id="storage-used"></p>
    <progress id="storage-bar" max="1" value="0" hidden></progress>
  </section>
  <section id="devices" class="card wide">
    <h2>Devices</h2>
    <table><thead><tr><th>Device</th><th>Role</th><th>State</th><th>Connection</th><th>Last seen</th></tr></thead><tbody id="device-rows"></tbody></table>
    <p id="no-devices" class="muted">No device is paired yet.</p>
  </section>
  <section id="held" class="card wide" hidden>
    <h2>Deletions held</h2>
    <p id="held-text"></p>
    <p><button id="held-restore" type="button">Bring them back</button> <button id="held-confirm" type="button">Delete them everywhere</button></p>
    <p id="held-result" class="muted"></p>
  </section>
  <section id="versions" class="card wide">
    <h2>Kept versions</h2>
    <table><thead><tr><th>Kept</th><th>File</th><th>Size</th><th>Why</th><th></th></tr></thead><tbody id="version-rows"></tbody></table>
    <p id="no-versions" class="muted">None yet: what other devices replace or delete is kept here.</p>
    <p id="version-result" class="muted"></p>
  </section>
  <section id="images" class="card wide">
    <h2>Images</h2>
    <div id="thumbnails"></div>
    <p id="no-images" class="muted">No images yet.</p>
  </section>
  <section id="transfers" class="card">
    <h2>Recent transfers</h2>
    <ul id="transfer-list"></ul>
    <p id="no-transfers" class="muted">Nothing yet.</p>
  </section>
  <section id="errors" class="card">
    <h2>Problems</h2>
    <ul id="error-list"></ul>
    <p id="no-errors" class="muted">None.</p>
  </section>
</main>
</body>
</html>
`

export const FAVICON_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2f6fde"/><path d="M4 10.5a2.5 2.5 0 0 1 .6-4.9 3.5 3.5 0 0 1 6.8.9 2 2 0 0 1 .1 4z" fill="#fff"/></svg>'

export const PAGE_CSS = `:root { color-scheme: light dark; --accent: #2f6fde; --muted: #777; --card: rgba(127,127,127,.08); font-family: system-ui, sans-serif; }
body { margin: 0; padding: 1rem 1.5rem; }
header { display: flex; align-items: center; gap: 1rem; }
h1 { font-size: 1.4rem; margin: .2rem 0; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 1rem; margin-top: 1rem; }
.card { background: var(--card); border-radius: 10px; padding: 1rem; overflow: hidden; }
.wide { grid-column: 1 / -1; }
.muted { color: var(--muted); font-size: .9rem; word-break: break-all; }
.badge { font-size: .8rem; padding: .15rem .6rem; border-radius: 1rem; background: var(--muted); color: white; }
.badge.live { background: #1a8f3c; }
#qr { display: block; background: white; padding: 8px; border-radius: 6px; }
code { display: block; font-size: .75rem; word-break: break-all; background: rgba(127,127,127,.15); padding: .4rem; border-radius: 4px; }
progress { width: 100%; height: 1rem; accent-color: var(--accent); }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid rgba(127,127,127,.25); }
ul { list-style: none; margin: 0; padding: 0; font-size: .88rem; }
li { padding: .25rem 0; border-bottom: 1px solid rgba(127,127,127,.2); word-break: break-all; }
li .when { color: var(--muted); margin-right: .5rem; }
.online { color: #1a8f3c; }
.blocked { color: #c0392b; }
#thumbnails { display: flex; flex-wrap: wrap; gap: .6rem; }
figure { margin: 0; width: 128px; text-align: center; font-size: .75rem; }
figure img { max-width: 128px; max-height: 128px; border-radius: 4px; }
figcaption { word-break: break-all; }
button { font: inherit; padding: .2rem .7rem; border-radius: 6px; border: 1px solid var(--accent); background: transparent; color: inherit; cursor: pointer; }
button:disabled { opacity: .5; cursor: default; }
#held { border: 2px solid #c0392b; }
`

export const PAGE_JS = `'use strict'
;(() => {
  const $ = (id) => document.getElementById(id)
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  const bytes = (n) => { let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ } return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i] }
  const short = (id) => id.length > 16 ? id.slice(0, 10) + '…' + id.slice(-4) : id
  const time = (ms) => new Date(ms).toLocaleTimeString()
  const ago = (ms) => { const s = Math.round((Date.now() - ms) / 1000); return s < 60 ? s + ' s ago' : s < 3600 ? Math.round(s / 60) + ' min ago' : time(ms) }
  const el = (tag, text, cls) => { const node = document.createElement(tag); if (text !== undefined) node.textContent = text; if (cls) node.className = cls; return node }
  const state = { progressEvents: 0, snapshots: 0 }
  window.cloudboxStatus = state

  function showProgress(p) {
    if (!p) return
    state.progressEvents++
    const bar = $('sync-progress')
    bar.max = Math.max(1, p.totalBytes)
    bar.value = p.doneBytes
    $('sync').dataset.active = String(p.active)
    $('sync-state').textContent = p.active ? 'Syncing ' + p.path : p.doneFiles === p.totalFiles ? 'Up to date (last batch below)' : 'Interrupted; resumes when the device reconnects'
    $('sync-detail').textContent = bytes(p.doneBytes) + ' of ' + bytes(p.totalBytes) + ' · ' + p.doneFiles + '/' + p.totalFiles + ' files · ' +
      bytes(p.bytesPerSecond) + '/s' + (p.active && p.etaSeconds !== undefined ? ' · ETA ' + Math.ceil(p.etaSeconds) + ' s' : '')
  }

  function list(target, empty, items, render) {
    const node = $(target)
    node.replaceChildren(...items.map(render))
    $(empty).hidden = items.length > 0
  }

  function render(s) {
    state.snapshots++
    document.title = (s.cloud.name || 'CloudBox') + ' · status'
    $('cloud-name').textContent = s.cloud.name || 'CloudBox server'
    $('cloud-id').textContent = s.cloud.id
    $('pair-command').textContent = "cloudbox pair '" + s.cloud.uri + "' --pin PIN"
    $('received').textContent = bytes(s.receivedBytes)
    if (s.progress) showProgress(s.progress)
    const used = s.storage.usedBytes + s.storage.sharedBytes + s.storage.stagedBytes
    $('storage-used').textContent = bytes(used) + (s.storage.quotaBytes ? ' of ' + bytes(s.storage.quotaBytes) : '') + ' · ' + s.storage.files + ' files' +
      (s.storage.sharedBytes ? ' · ' + bytes(s.storage.sharedBytes) + ' in the drop box' : '') +
      (s.storage.stagedBytes ? ' · ' + bytes(s.storage.stagedBytes) + ' of uploads in progress' : '')
    $('storage-bar').hidden = !s.storage.quotaBytes
    if (s.storage.quotaBytes) { $('storage-bar').max = s.storage.quotaBytes; $('storage-bar').value = used }
    list('device-rows', 'no-devices', s.devices, (d) => {
      const row = el('tr')
      row.dataset.device = d.id
      const name = el('td', d.label || short(d.id)); name.title = d.id
      const connection = d.peer && d.peer.state !== 'disconnected'
        ? (d.peer.state === 'in-sync' ? 'in sync' : 'connected') + (d.peer.transport ? ' (' + d.peer.transport + ')' : '') + (d.peer.latencyMs !== undefined ? ' · ' + d.peer.latencyMs + ' ms' : '')
        : (d.online ? 'online' : 'offline')
      row.append(name, el('td', d.role), el('td', d.state, d.state === 'blocked' ? 'blocked' : ''), el('td', connection, d.online ? 'online' : ''), el('td', ago(d.lastSeen)))
      return row
    })
    list('thumbnails', 'no-images', s.images, (path) => {
      const figure = el('figure')
      const img = el('img'); img.alt = path; img.loading = 'lazy'; img.src = 'thumbnail?path=' + encodeURIComponent(path)
      figure.append(img, el('figcaption', path.split('/').pop()))
      return figure
    })
    list('transfer-list', 'no-transfers', s.transfers, (t) => {
      const item = el('li')
      const what = t.via === 'deleted' ? '✗ ' + t.path + ' deleted' : (t.via === 'upload' ? '↑ ' : '↓ ') + t.path + ' · ' + bytes(t.bytes) + (t.reusedBytes ? ' (+' + bytes(t.reusedBytes) + ' reused)' : '')
      item.append(el('span', time(t.at), 'when'), el('span', what))
      return item
    })
    renderKeeping(s)
    list('error-list', 'no-errors', s.errors, (e) => {
      const item = el('li')
      item.append(el('span', time(e.at), 'when'), el('strong', e.code), el('span', ' ' + e.message + (e.path ? ' (' + e.path + ')' : '')))
      return item
    })
  }

  // The page's buttons: POST with the header the server asks of actions; the answer is shown as text.
  async function post(path, result) {
    $(result).textContent = 'working…'
    try {
      const response = await fetch(path, { method: 'POST', headers: { 'x-cloudbox-action': '1' } })
      const body = await response.json()
      $(result).textContent = body.error ? body.error.code + ': ' + body.error.message : describeAction(body)
    } catch (error) {
      $(result).textContent = String(error)
    }
  }
  function describeAction(body) {
    if (body.restored !== undefined && body.id !== undefined) return body.changed ? 'Restored ' + body.restored + '; it syncs to every device.' : body.restored + ' already has that content.'
    if (body.confirmed !== undefined) return body.confirmed + ' deletions confirmed; they reach every device.'
    if (body.restored !== undefined) return body.restored + ' files brought back' + (body.failed.length ? ', ' + body.failed.length + ' could not be (' + body.failed[0].code + ')' : '') + '.'
    return 'Done.'
  }
  $('held-confirm').addEventListener('click', () => post('held/confirm', 'held-result'))
  $('held-restore').addEventListener('click', () => post('held/restore', 'held-result'))

  function renderKeeping(s) {
    $('held').hidden = !s.held || s.held.count === 0
    if (s.held && s.held.count > 0) $('held-text').textContent = s.held.count + ' files vanished from this folder at once, so their deletion is held: nothing is deleted anywhere until you choose. ' + s.held.paths.join(', ') + (s.held.count > s.held.paths.length ? ', …' : '')
    list('version-rows', 'no-versions', s.versions || [], (v) => {
      const row = el('tr')
      row.dataset.version = v.id
      const button = el('button', 'Restore'); button.type = 'button'; button.title = 'Put this version back; it syncs to every device'
      button.addEventListener('click', () => post('versions/' + encodeURIComponent(v.id) + '/restore', 'version-result'))
      const cell = el('td'); cell.append(button)
      const name = el('td', v.path); name.title = 'from ' + v.device
      row.append(el('td', ago(v.keptAt)), name, el('td', bytes(v.size)), el('td', v.reason), cell)
      return row
    })
  }

  let delay = 500
  function connect() {
    const socket = new WebSocket(location.href.replace(/^http/, 'ws').replace(/[^/]*$/, 'live'))
    socket.onopen = () => { delay = 500; $('feed').textContent = 'live'; $('feed').className = 'badge live' }
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data)
      if (data.type === 'snapshot') render(data.state)
      else if (data.type === 'progress') showProgress(data.progress)
    }
    socket.onclose = () => {
      $('feed').textContent = 'reconnecting…'; $('feed').className = 'badge'
      setTimeout(connect, delay)
      delay = Math.min(delay * 2, 10000)
    }
  }
  connect()
})()
`
