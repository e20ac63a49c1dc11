// Small DOM helpers and the page's error bar.

/** Creates an element: `text` sets its text, `on<event>` adds a listener, other keys are attributes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  node.append(...children);
  return node;
}

/** Sets an element's text only when it changed (keeps selections and avoids layout work). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

const errorBar = document.getElementById('error');
errorBar.querySelector('button').addEventListener('click', () => clearError());

/** Shows a message in the error bar until it is dismissed or replaced. */
export function showError(message) {
  errorBar.querySelector('.message').textContent = message;
  errorBar.hidden = false;
}

export function clearError() {
  errorBar.hidden = true;
}

/** Fills a limits form (values in B/s, shown in KiB/s) unless the user is editing it. */
export function fillLimits(form, limits) {
  if (form.dataset.dirty) return;
  form.elements.download.value = Math.round((limits.download || 0) / 1024);
  form.elements.upload.value = Math.round((limits.upload || 0) / 1024);
}

/** Reads a limits form back as B/s, and marks it clean again. */
export function readLimits(form) {
  delete form.dataset.dirty;
  return {
    download: Math.max(0, Math.round(Number(form.elements.download.value) * 1024) || 0),
    upload: Math.max(0, Math.round(Number(form.elements.upload.value) * 1024) || 0),
  };
}

/** A view's polling: `start()` runs `refresh` now and every `ms` milliseconds until `stop()`; starting twice is a
 * no-op. The views that poll the API share it, so that none forgets to clear its timer. */
export function poller(refresh, ms) {
  let timer = null;
  return {
    start() {
      if (timer) return;
      refresh();
      timer = setInterval(refresh, ms);
    },
    stop() {
      clearInterval(timer);
      timer = null;
    },
  };
}
