/*
 * @barehub/session-clock: JupyterLab 4 shows the time left before Slurm's time limit ends the job that runs
 * this server, and warns (once, updated as the minutes drop) warn_before_s before the end that unsaved work
 * will be lost. Servers that are no Slurm job (ends_at null) show nothing.
 *
 * Hand-written, no build step: this file is a module federation container as JupyterLab's bootstrap loads one
 * (package.json's jupyterlab._build.load names it; it registers window._JUPYTERLAB[name] with init(shareScope)
 * and get("./extension") resolving to a factory of {__esModule, default: [plugins]}). The plugin requires no
 * tokens (they would need webpack's shared module instances); it uses JupyterLab's notification commands and
 * takes Widget from the shared @lumino/widgets for its indicator in the top bar.
 *
 * It asks the server's GET {baseUrl}barehub/session (barehub.session_clock, which asks the hub at most every
 * 30 s whatever the number of tabs) every POLL_MS, and counts down between asks from the server's "now", so
 * that a browser whose clock is off still shows the right time left.
 *
 * The file name carries the first 16 hex digits of the sha256 of this file (browsers cache it): after an
 * edit, rename it and update package.json (tests/unit/test_session_clock.py checks both).
 */
(function () {
  'use strict';

  const NAME = '@barehub/session-clock';
  const POLL_MS = 30 * 1000;
  const TICK_MS = 15 * 1000;
  const DEFAULT_WARN_S = 600;
  let shareScope = null;

  function pageConfig() {
    const el = document.getElementById('jupyter-config-data');
    try {
      return el ? JSON.parse(el.textContent || '{}') : {};
    } catch (e) {
      return {};
    }
  }

  function cookie(name) {
    const match = document.cookie.match('\\b' + name + '=([^;]*)\\b');
    return match ? match[1] : undefined;
  }

  // A module of JupyterLab's own from webpack's share scope: the version JupyterLab loaded, else the highest.
  async function sharedModule(name) {
    const versions = shareScope && shareScope[name];
    if (!versions) {
      return null;
    }
    const parts = v => v.split(/[.+-]/).map(p => parseInt(p, 10) || 0);
    const newer = (a, b) => {
      const [x, y] = [parts(a), parts(b)];
      for (let i = 0; i < Math.max(x.length, y.length); i++) {
        if ((x[i] || 0) !== (y[i] || 0)) {
          return (y[i] || 0) - (x[i] || 0);
        }
      }
      return 0;
    };
    const keys = Object.keys(versions).sort(newer);
    const key = keys.find(k => versions[k].loaded) || keys[0];
    const factory = await versions[key].get();
    return factory();
  }

  function minutes(ms) {
    return Math.max(0, Math.ceil(ms / 60000));
  }

  function timeLeft(ms) {
    const total = minutes(ms);
    if (total < 60) {
      return total + ' min';
    }
    const h = Math.floor(total / 60);
    const m = total % 60;
    return m ? h + ' h ' + m + ' min' : h + ' h';
  }

  function warning(ms) {
    if (ms <= 0) {
      return "This session has reached Slurm's time limit and is ending. Unsaved changes will be lost.";
    }
    const n = minutes(ms);
    return 'This session ends in ' + n + (n === 1 ? ' minute' : ' minutes') +
      " (Slurm's time limit). Save your work: unsaved changes will be lost when the job ends.";
  }

  const STYLE = `
.barehub-SessionClock {
  display: flex;
  align-items: center;
  flex: 0 0 auto;
  min-width: max-content;
  padding: 0 8px;
  font-size: var(--jp-ui-font-size1);
  color: var(--jp-ui-font-color1);
  white-space: nowrap;
}
.barehub-SessionClock.barehub-mod-warn {
  color: var(--jp-warn-color0);
  font-weight: 600;
}`;

  class SessionClock {
    constructor(app, Widget) {
      this.app = app;
      this.Widget = Widget;
      this.url = (pageConfig().baseUrl || '/') + 'barehub/session';
      this.endsAt = null; // ms since the epoch, server clock
      this.warnMs = DEFAULT_WARN_S * 1000;
      this.offset = 0; // server clock - browser clock, ms
      this.widget = null;
      this.noteId = null;
      this.noteText = null;
      this.dismissed = false; // the person closed the warning: it is not shown again for this end
      this.chain = Promise.resolve();
    }

    start() {
      this.poll();
      setInterval(() => this.poll(), POLL_MS);
      setInterval(() => this.update(), TICK_MS);
    }

    async poll() {
      try {
        const sent = Date.now();
        const headers = {};
        const xsrf = cookie('_xsrf');
        if (xsrf) {
          headers['X-XSRFToken'] = xsrf;
        }
        const response = await fetch(this.url, { credentials: 'same-origin', cache: 'no-store', headers });
        if (!response.ok) {
          return; // the server restarting, the login expired: keep the last answer
        }
        const data = await response.json();
        const received = Date.now();
        const parsed = data.ends_at ? Date.parse(data.ends_at) : null;
        const endsAt = Number.isFinite(parsed) ? parsed : null;
        const now = Date.parse(data.now);
        if (endsAt !== this.endsAt) {
          this.dismissed = false; // a new end (the job's limit changed): warn about it
        }
        this.endsAt = endsAt;
        this.warnMs = (Number.isFinite(data.warn_before_s) ? data.warn_before_s : DEFAULT_WARN_S) * 1000;
        this.offset = Number.isFinite(now) ? now - (sent + received) / 2 : 0;
      } catch (e) {
        return; // no network: keep the last answer
      }
      this.update();
    }

    update() {
      // one at a time: notify/update are asynchronous and must not race into two warnings
      this.chain = this.chain.then(() => this.render()).catch(e => console.warn(NAME, e));
      return this.chain;
    }

    async render() {
      if (this.endsAt === null) {
        if (this.widget) {
          this.widget.hide();
        }
        await this.unwarn();
        return;
      }
      const left = this.endsAt - (Date.now() + this.offset);
      const widget = this.ensureWidget();
      const text = 'Time left: ' + timeLeft(left);
      if (widget.node.textContent !== text) {
        widget.node.textContent = text;
      }
      const end = new Date(this.endsAt - this.offset).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      widget.node.setAttribute('aria-label', 'Time left before the Slurm job running this session ends: ' +
        timeLeft(left));
      widget.node.title = 'This session runs as a Slurm job that ends at ' + end +
        ' (its time limit). Unsaved work will be lost then.';
      widget.node.classList.toggle('barehub-mod-warn', left <= this.warnMs);
      widget.show();
      if (left <= this.warnMs) {
        await this.warn(warning(left));
      } else {
        await this.unwarn();
      }
    }

    ensureWidget() {
      if (this.widget) {
        return this.widget;
      }
      const style = document.createElement('style');
      style.textContent = STYLE;
      document.head.appendChild(style);
      if (this.Widget) {
        this.widget = new this.Widget();
        this.widget.id = 'barehub-session-clock';
        this.app.shell.add(this.widget, 'top', { rank: 1000 });
      } else {
        // no @lumino/widgets to share: a plain element at the end of the top bar
        const node = document.createElement('div');
        node.id = 'barehub-session-clock';
        (document.getElementById('jp-top-panel') || document.body).appendChild(node);
        this.widget = { node, hide: () => (node.style.display = 'none'), show: () => (node.style.display = '') };
      }
      this.widget.node.classList.add('barehub-SessionClock');
      this.widget.node.setAttribute('role', 'timer');
      return this.widget;
    }

    async warn(text) {
      if (this.dismissed || text === this.noteText) {
        return;
      }
      const commands = this.app.commands;
      if (this.noteId === null) {
        this.noteId = await commands.execute('apputils:notify', {
          message: text, type: 'warning', options: { autoClose: false }
        });
      } else if (!(await commands.execute('apputils:update-notification', {
        id: this.noteId, message: text, type: 'warning', autoClose: false
      }))) {
        this.noteId = null; // closed by the person: not shown again
        this.dismissed = true;
      }
      this.noteText = text;
    }

    async unwarn() {
      if (this.noteId !== null) {
        await this.app.commands.execute('apputils:dismiss-notification', { id: this.noteId });
      }
      this.noteId = null;
      this.noteText = null;
    }
  }

  const plugin = {
    id: NAME + ':plugin',
    description: "Shows the time left before Slurm's time limit ends this session, and warns before it does.",
    autoStart: true,
    activate: app => {
      sharedModule('@lumino/widgets')
        .catch(e => console.warn(NAME, 'no shared @lumino/widgets', e))
        .then(widgets => app.restored.then(() => new SessionClock(app, widgets && widgets.Widget).start()));
    }
  };

  const containers = (window._JUPYTERLAB = window._JUPYTERLAB || {});
  containers[NAME] = {
    init: scope => {
      shareScope = scope;
    },
    get: module => {
      if (module === './extension') {
        return Promise.resolve(() => ({ __esModule: true, default: [plugin] }));
      }
      return Promise.reject(new Error(NAME + ' has no module ' + module));
    }
  };
})();
