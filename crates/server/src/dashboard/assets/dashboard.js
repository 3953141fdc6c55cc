// Switchboard dashboard behaviour, served as a file: the CSP allows no inline script.
// Every page works without it: destructive actions then go through the server's confirm
// step, and values are those of the page load.
'use strict';
(() => {
  // Confirmation dialog for buttons (or forms) carrying data-confirm.
  let dialog;
  const ask = (question, label) => new Promise((resolve) => {
    if (!dialog) {
      dialog = document.createElement('dialog');
      dialog.className = 'confirm';
      dialog.id = 'confirm-dialog';
      dialog.setAttribute('aria-labelledby', 'confirm-dialog-question');
      const text = document.createElement('p');
      text.id = 'confirm-dialog-question';
      const form = document.createElement('form');
      form.method = 'dialog';
      const menu = document.createElement('menu');
      const no = document.createElement('button');
      no.value = 'cancel';
      no.id = 'dialog-cancel';
      no.textContent = 'Cancel';
      const yes = document.createElement('button');
      yes.value = 'ok';
      yes.id = 'dialog-ok';
      yes.className = 'danger';
      menu.append(no, yes);
      form.append(menu);
      dialog.append(text, form);
      document.body.append(dialog);
    }
    dialog.querySelector('#confirm-dialog-question').textContent = question;
    dialog.querySelector('#dialog-ok').textContent = label;
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    dialog.querySelector('#dialog-cancel').focus();
  });

  document.addEventListener('submit', (event) => {
    const form = event.target;
    const button = event.submitter;
    const question = (button && button.dataset.confirm) || form.dataset.confirm;
    if (!question || form.dataset.confirmed === '1') return;
    event.preventDefault();
    const label = (button && button.textContent.trim()) || 'Confirm';
    ask(question, label).then((ok) => {
      if (!ok) return;
      // The server asks again (its confirm step) unless the form says it was confirmed.
      let flag = form.querySelector('input[name=confirmed]');
      if (!flag) {
        flag = document.createElement('input');
        flag.type = 'hidden';
        flag.name = 'confirmed';
        form.append(flag);
      }
      flag.value = '1';
      form.dataset.confirmed = '1';
      form.requestSubmit(button || undefined);
    });
  });

  // A page restored from the back/forward cache must ask again.
  window.addEventListener('pageshow', () => {
    document.querySelectorAll('form[data-confirmed]').forEach((form) => {
      delete form.dataset.confirmed;
      const flag = form.querySelector('input[name=confirmed]');
      if (flag) flag.remove();
    });
  });

  // Tables with a selection: select-all, a count, bulk buttons enabled only with a selection.
  const refreshSelection = (form) => {
    const boxes = [...form.querySelectorAll('tbody input[type=checkbox]')];
    const n = boxes.filter((b) => b.checked).length;
    const count = form.querySelector('[data-selected-count]');
    if (count) count.textContent = `${n} selected`;
    form.querySelectorAll('.toolbar button').forEach((b) => { b.disabled = n === 0; });
    const all = form.querySelector('[data-select-all]');
    if (all) {
      all.checked = n > 0 && n === boxes.length;
      all.indeterminate = n > 0 && n < boxes.length;
    }
  };
  document.addEventListener('change', (event) => {
    const form = event.target.closest('form[data-selection]');
    if (!form) return;
    if (event.target.matches('[data-select-all]')) {
      form.querySelectorAll('tbody input[type=checkbox]').forEach((b) => { b.checked = event.target.checked; });
    }
    refreshSelection(form);
  });
  document.querySelectorAll('form[data-selection]').forEach(refreshSelection);

  // Live values: the page names its endpoint; every [data-live=key] shows values[key].
  const apply = (values) => {
    document.querySelectorAll('[data-live]').forEach((el) => {
      const key = el.dataset.live;
      if (!Object.prototype.hasOwnProperty.call(values, key)) return;
      const value = String(values[key]);
      if (el.textContent === value) return;
      el.textContent = value;
      const prefix = el.dataset.liveClass;
      if (prefix) {
        [...el.classList].filter((c) => c.startsWith(prefix)).forEach((c) => el.classList.remove(c));
        el.classList.add(prefix + value);
      }
      el.classList.add('changed');
      setTimeout(() => el.classList.remove('changed'), 1500);
    });
  };
  const src = document.body.dataset.liveSrc;
  if (src) {
    const every = 3000;
    let delay = every;
    const stop = (message) => {
      const note = document.createElement('p');
      note.className = 'notice';
      note.id = 'live-stopped';
      note.textContent = message;
      document.querySelector('main').prepend(note);
    };
    const poll = async () => {
      if (!document.hidden) {
        try {
          const r = await fetch(src, {
            headers: { accept: 'application/json' },
            credentials: 'same-origin',
            redirect: 'manual',
            cache: 'no-store',
          });
          if (r.type === 'opaqueredirect' || r.status === 401) {
            stop('Your session has ended: reload the page to log in again.');
            return;
          }
          if (r.status === 429) {
            delay = Math.max(every, (Number(r.headers.get('retry-after')) || 10) * 1000);
          } else if (r.ok) {
            apply((await r.json()).values || {});
            document.body.dataset.liveAt = String(Date.now());
            delay = every;
          } else {
            delay = Math.min(delay * 2, 30000);
          }
        } catch {
          // Offline or the node restarting: try again, less often.
          delay = Math.min(delay * 2, 30000);
        }
      }
      setTimeout(poll, delay);
    };
    setTimeout(poll, delay);
  }
})();
