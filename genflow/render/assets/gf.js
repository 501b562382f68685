/* genflow's console and static report: one script draws both.
 *
 * The page holds its data as JSON (the element #gf-data) built by
 * genflow.render.views; `data.mode` says which page it is:
 *   "report"   every instance of the static report, filtered and paged here;
 *   "list"     one page of the console's instance list (paged by the server);
 *   "instance" one instance in the console, kept live by polling the server;
 *   "schedules" the console's schedules (tables drawn by the server): its actions.
 * Every text is put in with textContent (never innerHTML): payloads and data
 * are whatever outside systems sent.
 */
"use strict";
const GF = (() => {
  const PAGE = 100;

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "").replace("Z", "") + " UTC";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 0.001) return `${(seconds * 1e6).toFixed(0)} µs`;
    if (seconds < 1) return `${(seconds * 1000).toFixed(1)} ms`;
    if (seconds < 120) return `${seconds.toFixed(2)} s`;
    if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  function pill(status) {
    return el("span", { class: `status status-${status}`, text: status });
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  // -- the instance list ---------------------------------------------------------------

  function rowsTable(rows, open, selected) {
    const body = el("tbody");
    for (const row of rows) {
      const link = el("a", { href: open(row), text: row.id, class: "gf-open" });
      body.append(el("tr", {
        "data-id": row.id, "data-status": row.status,
        class: row.id === selected ? "gf-selected" : null,
      },
        el("td", {}, link), el("td", { text: row.workflow }), el("td", {}, pill(row.status)),
        el("td", { text: (row.waiting_for || []).join(", ") }),
        el("td", { text: when(row.wake_at) }), el("td", { text: when(row.updated_at) }),
        el("td", { class: row.error ? "gf-error" : null, text: row.error || "" })));
    }
    const head = el("thead", {}, el("tr", {}, ["instance", "workflow", "status", "waiting for",
      "wakes", "last changed", "error"].map((h) => el("th", { text: h }))));
    return el("table", { class: "gf-table", id: "instances" }, head, body);
  }

  function matches(row, filters) {
    if (filters.q && !row.id.toLowerCase().includes(filters.q.toLowerCase())
        && !(row.error || "").toLowerCase().includes(filters.q.toLowerCase())) return false;
    if (filters.workflow && row.workflow !== filters.workflow) return false;
    if (filters.status && row.status !== filters.status) return false;
    if (filters.waiting && !(row.waiting_for || []).includes(filters.waiting)) return false;
    if (filters.failed && !row.failed) return false;
    if (filters.schedule && row.schedule !== filters.schedule) return false;
    if (filters.queue && row.queue !== filters.queue) return false;
    return true;
  }

  // -- diagrams and marks ----------------------------------------------------------------

  function diagram(view) {
    const box = el("div", { class: "gf-diagram", "data-key": view.diagram || "" });
    const source = view.diagram &&
      document.querySelector(`template.gf-diagram-src[data-key="${view.diagram}"]`);
    if (!source) {
      box.append(el("p", { class: "gf-empty", text: "no diagram" }));
      return box;
    }
    box.append(source.content.cloneNode(true));
    return box;
  }

  function applyMarks(box, view) {
    for (const old of box.querySelectorAll(".gf-badge, .gf-note")) old.remove();
    for (const node of box.querySelectorAll("[class*='m-']")) {
      for (const cls of [...node.classList]) if (cls.startsWith("m-")) node.classList.remove(cls);
    }
    const find = (cls) => box.querySelectorAll(`.${cls}`);
    for (const [id, marks] of Object.entries(view.marks || {})) {
      for (const node of find(`gf-n-${id}`)) node.classList.add(...marks.map((m) => `m-${m}`));
    }
    for (const index of view.taken || []) {
      for (const edge of find(`gf-e-${index}`)) edge.classList.add("m-taken");
    }
    const badges = { ...(view.at || {}) };
    for (const [id, threads] of Object.entries(badges)) {
      for (const node of find(`gf-n-${id}`)) badge(node, `▶ ${threads.join(", ")}`);
    }
    for (const [id, note] of Object.entries(view.notes || {})) {
      for (const node of find(`gf-n-${id}`)) {
        if (node instanceof SVGElement) {
          const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
          title.textContent = note;
          title.classList.add("gf-note");
          node.append(title);
        } else node.append(el("span", { class: "gf-note", text: note }));
      }
    }
  }

  function badge(node, text) {
    if (!(node instanceof SVGGraphicsElement)) {
      node.append(el("span", { class: "gf-badge", text }));
      return;
    }
    const box = node.getBBox();
    const label = document.createElementNS("http://www.w3.org/2000/svg", "text");
    label.setAttribute("x", String(box.x + box.width + 4));
    label.setAttribute("y", String(box.y + 11));
    label.setAttribute("class", "gf-badge");
    label.textContent = text;
    node.append(label);
  }

  function legend(entries) {
    return el("ul", { class: "gf-legend" }, entries.map((e) => el("li", { "data-mark": e.mark },
      el("span", { class: `gf-swatch m-${e.mark}` }), `${e.mark}: ${e.meaning}`)));
  }

  // -- one instance ----------------------------------------------------------------------

  function timelineTable(rows) {
    if (!rows.length) {
      return el("p", { class: "gf-empty", text: "No journal entries: the journal is off " +
        "(Engine(journal=True) or GENFLOW_JOURNAL=1); repairs are always recorded." });
    }
    const times = rows.flatMap((r) => [r.start, r.end]).filter(Boolean).map((t) => Date.parse(t));
    const first = Math.min(...times), last = Math.max(...times);
    const span = Math.max(last - first, 1);
    const body = el("tbody");
    for (const row of rows) {
      const start = row.start ? Date.parse(row.start) : first;
      const end = row.end ? Date.parse(row.end) : last;
      const fill = el("div", { class: `gf-bar-fill o-${row.outcome}` });
      fill.style.left = `${((start - first) / span) * 100}%`;
      fill.style.width = `${Math.max(((end - start) / span) * 100, 0.5)}%`;
      body.append(el("tr", { class: `o-${row.outcome}`, "data-kind": row.kind },
        el("td", { text: row.kind }), el("td", { text: row.label }),
        el("td", { text: row.thread === "_main_" ? "main" : (row.thread || "") }),
        el("td", { text: when(row.start) }), el("td", { text: duration(row.duration) }),
        el("td", { text: row.attempt ?? "" }),
        el("td", { text: row.outcome, class: row.outcome === "failed" ? "gf-error" : null }),
        el("td", { class: "gf-error", text: row.error || "" }),
        el("td", { class: "gf-bars" }, el("div", { class: "gf-bar-track" }, fill))));
    }
    const head = el("thead", {}, el("tr", {}, ["kind", "what", "thread", "start", "duration",
      "attempt", "outcome", "error", "timeline"].map((h) => el("th", { text: h }))));
    return el("table", { class: "gf-table gf-timeline", id: "gf-timeline" }, head, body);
  }

  function eventsTable(events) {
    if (!events.length) return el("p", { class: "gf-empty", text: "No events in the journal." });
    return el("table", { class: "gf-table", id: "gf-events" },
      el("thead", {}, el("tr", {}, ["#", "at", "event", "thread", "payload"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, events.map((e) => el("tr", {},
        el("td", { text: e.seq }), el("td", { text: when(e.at) }),
        el("td", { text: `${e.kind === "timer" ? "⏱ " : ""}${e.event || ""}` }),
        el("td", { text: e.thread === "_main_" ? "main" : (e.thread || "") }),
        el("td", {}, el("pre", { text: e.payload === null ? "—" : json(e.payload) }))))));
  }

  function threadsList(view) {
    return el("ul", { id: "gf-threads" }, view.threads.map((t) => el("li", {
      "data-thread": t.id, "data-status": t.status },
      `${t.name}: ${t.status} at ${t.stmt ? `'${t.stmt}'` : "its start"}`,
      t.since ? ` since ${when(t.since)}` : "",
      t.events.length ? el("ul", {}, t.events.map((e) => el("li", {},
        `${e.due ? "timer" : "event"} ${e.event}: ${e.status}`,
        e.due ? `, due ${when(e.due)}` : "", e.error ? el("span", { class: "gf-error",
          text: ` — ${e.error}` }) : ""))) : "")));
  }

  // The instances this one is linked to (docs/together.md): its parent, if a
  // Child started it, and the children it started, each a link to its own page.
  function familyList(view, link) {
    const items = [];
    if (view.parent) {
      items.push(el("li", { class: "gf-parent" }, "parent: ",
        el("a", { href: link(view.parent.id), text: view.parent.id, class: "gf-link" }),
        ` (its child #${view.parent.index})`));
    }
    for (const child of view.children || []) {
      items.push(el("li", { class: "gf-child", "data-id": child.id }, "child: ",
        el("a", { href: link(child.id), text: child.id, class: "gf-link" }), " ",
        pill(child.status)));
    }
    return items.length ? el("ul", { id: "gf-family" }, items) : null;
  }

  // Messages kept until a thread waits for their event (oldest first: the order
  // they are delivered in), then those set aside undelivered, with why.
  function mailboxTable(box) {
    const row = (m, state) => el("tr", { "data-seq": m.seq, "data-state": state },
      el("td", { text: m.seq }), el("td", { text: m.event }), el("td", { text: m.thread === "_main_" ? "main" : (m.thread || "any") }),
      el("td", { text: when(m.sent_at) }), el("td", { text: state === "kept" ? "kept" :
        `set aside: ${m.reason || ""}` }),
      el("td", {}, el("pre", { text: m.payload === null ? "—" : json(m.payload) })));
    return el("table", { class: "gf-table", id: "gf-mailbox" },
      el("thead", {}, el("tr", {}, ["#", "event", "for thread", "sent", "state", "payload"]
        .map((h) => el("th", { text: h })))),
      el("tbody", {}, box.kept.map((m) => row(m, "kept")),
        box.undelivered.map((m) => row(m, "undelivered"))));
  }

  function instancePanel(view, options) {
    const panel = el("section", { class: "gf-instance", id: "gf-instance", "data-id": view.id,
      "data-status": view.status, "data-version": view.version });
    panel.append(el("h1", {}, `${view.id} `, pill(view.status), " ",
      el("small", { text: view.workflow })));
    if (options.actions) panel.append(options.actions(view));
    for (const problem of view.problems || []) panel.append(el("p", { class: "problem",
      text: problem }));
    const left = el("div", {});
    const right = el("div", {});
    const box = diagram(view);
    left.append(el("h2", { text: "Where each thread is" }), box,
      legend(options.legend || []));
    right.append(el("h2", { text: "What it does and why" }),
      el("pre", { class: "describe", id: "gf-describe", text: view.text }),
      el("h2", { text: "Threads and waits" }), threadsList(view));
    panel.append(el("div", { class: "gf-grid" }, left, right));
    const family = familyList(view, options.link || ((id) => `#i=${encodeURIComponent(id)}`));
    if (family) panel.append(el("h2", { text: "Parent and children" }), family);
    if (view.mailbox && (view.mailbox.kept.length || view.mailbox.undelivered.length)) {
      panel.append(el("h2", { text: "Mailbox" }), mailboxTable(view.mailbox));
    }
    panel.append(el("h2", { text: "Timeline" }), timelineTable(view.timeline || []),
      el("h2", { text: "Events received" }), eventsTable(view.events || []));
    if (view.data !== undefined) {
      panel.append(el("h2", { text: "Data" }), el("pre", { id: "gf-data-view",
        text: json(view.data) }));
    }
    // marks are laid once the diagram is in the document (badges need its layout)
    requestAnimationFrame(() => applyMarks(box, view));
    return panel;
  }

  // -- the static report ------------------------------------------------------------------

  function report(data) {
    const main = document.getElementById("gf-main");
    const state = { filters: {}, page: 0 };
    const form = filtersForm(data, state.filters, () => { state.page = 0; draw(); });
    const list = el("div", { id: "gf-list" });
    const detail = el("div", { id: "gf-detail" });
    main.append(form, list, detail);

    function draw() {
      const rows = data.rows.filter((r) => matches(r, state.filters));
      const pages = Math.max(1, Math.ceil(rows.length / PAGE));
      state.page = Math.min(state.page, pages - 1);
      const shown = rows.slice(state.page * PAGE, (state.page + 1) * PAGE);
      const selected = decodeURIComponent(location.hash.replace(/^#i=/, ""));
      list.replaceChildren(
        el("p", { class: "meta", id: "gf-count",
          text: `${rows.length} of ${data.rows.length} instance(s) match` }),
        rowsTable(shown, (r) => `#i=${encodeURIComponent(r.id)}`, selected),
        el("div", { class: "gf-pager" },
          el("button", { type: "button", id: "gf-prev", disabled: state.page === 0,
            onclick: () => { state.page -= 1; draw(); } }, "previous"),
          `page ${state.page + 1} of ${pages}`,
          el("button", { type: "button", id: "gf-next", disabled: state.page >= pages - 1,
            onclick: () => { state.page += 1; draw(); } }, "next")));
      const view = data.views[selected];
      detail.replaceChildren(view ? instancePanel(view, { legend: data.legend }) :
        el("p", { class: "gf-empty", text: "Pick an instance to see it." }));
    }
    window.addEventListener("hashchange", draw);
    draw();
  }

  function filtersForm(data, filters, changed) {
    const select = (name, label, values) => el("label", {}, label,
      el("select", { name, onchange: (e) => { filters[name] = e.target.value; changed(); } },
        el("option", { value: "", text: "any" }),
        values.map((v) => el("option", { value: v, text: v, selected: filters[name] === v }))));
    return el("form", { class: "gf-filters", id: "gf-filters",
      onsubmit: (e) => e.preventDefault() },
      el("label", {}, "search (id or error)", el("input", { type: "search", name: "q",
        value: filters.q || "", oninput: (e) => { filters.q = e.target.value; changed(); } })),
      select("workflow", "workflow", data.workflows || []),
      select("status", "status", data.statuses || []),
      select("waiting", "waiting for", data.events || []),
      el("label", {}, "failed", el("input", { type: "checkbox", name: "failed",
        onchange: (e) => { filters.failed = e.target.checked; changed(); } })),
      (data.schedules || []).length ? select("schedule", "started by schedule",
        data.schedules) : "",
      (data.queues || []).length ? select("queue", "in queue", data.queues) : "");
  }

  // -- the console -------------------------------------------------------------------------

  function base() {
    return document.body.dataset.base || "";
  }

  async function call(path, options) {
    const headers = { "Accept": "application/json", ...(options && options.headers) };
    const csrf = (window.GF_DATA || {}).csrf;
    if (csrf) headers["X-Genflow-CSRF"] = csrf;
    const response = await fetch(base() + path, { credentials: "same-origin", ...options,
      headers });
    const text = await response.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: { message: text } }; }
    if (!response.ok) {
      const error = (body && body.error) || {};
      throw new Error(`${error.type || response.status}: ${error.message || text}`);
    }
    return body;
  }

  function list(data) {
    const main = document.getElementById("gf-main");
    const open = (r) => `${base()}/instances/${encodeURIComponent(r.id)}`;
    const next = data.next ? el("a", { id: "gf-next", href: data.next, text: "next page →" }) : "";
    main.append(
      el("p", { class: "meta", id: "gf-count", text: data.summary || "" }),
      rowsTable(data.rows, open),
      el("div", { class: "gf-pager" }, data.first ? el("a", { href: data.first,
        text: "← first page" }) : "", next));
  }

  function instance(data) {
    const main = document.getElementById("gf-main");
    let view = data.view;
    const message = el("div", { id: "gf-message" });
    const draw = () => main.replaceChildren(message,
      instancePanel(view, { legend: data.legend, actions,
        link: (id) => `${base()}/instances/${encodeURIComponent(id)}` }));
    const path = `/console/instances/${encodeURIComponent(view.id)}`;

    async function refresh() {
      try {
        const fresh = await call(`${path}/view`);
        if (fresh.version !== view.version) {
          if (fresh.diagram !== view.diagram && !document.querySelector(
              `template.gf-diagram-src[data-key="${fresh.diagram}"]`)) {
            location.reload();
            return;
          }
          view = fresh;
          draw();
        }
      } catch (error) {
        say(false, `could not refresh: ${error.message}`);
      }
    }

    function say(ok, text) {
      message.replaceChildren(el("div", { class: `gf-message ${ok ? "ok" : "bad"}`, text }));
    }

    function actions(current) {
      const done = ["finished", "cancelled"].includes(current.status);
      const waits = current.threads.flatMap((t) => t.events.filter((e) => !e.due)
        .map((e) => ({ thread: t.id, event: e.event })));
      return el("div", { class: "gf-actions", id: "gf-actions" },
        el("button", { type: "button", id: "gf-act-send", disabled: done || !waits.length,
          onclick: () => sendDialog(current, waits) }, "Send an event…"),
        el("button", { type: "button", id: "gf-act-retry",
          disabled: !(current.status === "failed" || current.error),
          onclick: () => confirmAction("retry", `Retry instance ${current.id}? Its failed ` +
            "step runs again.", {}) }, "Retry…"),
        el("button", { type: "button", id: "gf-act-move", disabled: done,
          onclick: () => moveDialog(current) }, "Move a thread…"),
        el("button", { type: "button", id: "gf-act-cancel", class: "danger", disabled: done,
          onclick: () => confirmAction("cancel", `Cancel instance ${current.id}? Its ` +
            "handlers are torn down and it takes no more events.", {}) }, "Cancel…"));
    }

    function dialog(title, fields, confirmText, onConfirm) {
      const box = el("dialog", { id: "gf-dialog" });
      const form = el("form", { method: "dialog" }, el("strong", { text: title }), fields,
        el("div", { class: "gf-actions" },
          el("button", { type: "button", id: "gf-dialog-cancel",
            onclick: () => { box.close(); box.remove(); } }, "Back"),
          el("button", { type: "submit", id: "gf-confirm", class: "danger" }, confirmText)));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        box.close();
        box.remove();
        await onConfirm(form);
      });
      box.append(form);
      document.body.append(box);
      box.showModal();
      return box;
    }

    async function act(action, body) {
      try {
        const result = await call(`${path}/${action}`, { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        view = result.view;
        draw();
        say(true, result.message);
      } catch (error) {
        say(false, error.message);
      }
    }

    function confirmAction(action, question, body) {
      dialog(question, [], `Yes, ${action}`, () => act(action, body));
    }

    function sendDialog(current, waits) {
      const choice = el("select", { name: "event", id: "gf-send-event" }, waits.map((w, i) =>
        el("option", { value: String(i), text: `${w.event}` +
          (w.thread === "_main_" ? "" : ` (thread ${w.thread})`) })));
      const payload = el("textarea", { name: "payload", id: "gf-send-payload",
        placeholder: "the payload as JSON (empty: none)" });
      dialog(`Send an event to ${current.id}`, [el("label", {}, "event ", choice),
        el("label", {}, "payload (JSON)", payload)], "Send", async () => {
        const wait = waits[Number(choice.value)];
        let value = null;
        if (payload.value.trim()) {
          try { value = JSON.parse(payload.value); } catch (error) {
            say(false, `the payload is not JSON: ${error.message}`);
            return;
          }
        }
        await act("send", { event: wait.event, thread: wait.thread, payload: value });
      });
    }

    function moveDialog(current) {
      const thread = el("select", { name: "thread", id: "gf-move-thread" },
        current.threads.map((t) => el("option", { value: t.id, text: t.name })));
      const statement = el("input", { name: "statement", id: "gf-move-statement",
        placeholder: "a Step, Wait or WaitFor of that thread" });
      dialog(`Move a thread of ${current.id}`, [el("label", {}, "thread ", thread),
        el("label", {}, "to statement", statement)], "Move",
      () => act("move", { thread: thread.value, statement: statement.value }));
    }

    draw();
    setInterval(refresh, data.poll_ms || 2000);
  }

  // -- the schedules page: its actions, each confirmed, posted with the CSRF header -------

  function schedules(data) {
    const message = document.getElementById("gf-message");
    const say = (ok, text) => message && message.replaceChildren(
      el("div", { class: `gf-message ${ok ? "ok" : "bad"}`, text }));
    const said = sessionStorage.getItem("gf-message");
    if (said) {
      sessionStorage.removeItem("gf-message");
      say(true, said);
    }
    for (const button of document.querySelectorAll("button.gf-schedule-action")) {
      button.addEventListener("click", () => {
        const { action, schedule, confirm } = button.dataset;
        const box = el("dialog", { id: "gf-dialog" });
        const form = el("form", { method: "dialog" }, el("strong", { text: confirm }),
          el("div", { class: "gf-actions" },
            el("button", { type: "button", id: "gf-dialog-cancel",
              onclick: () => { box.close(); box.remove(); } }, "Back"),
            el("button", { type: "submit", id: "gf-confirm", class: "danger" },
              `Yes, ${action}`)));
        form.addEventListener("submit", async (event) => {
          event.preventDefault();
          box.close();
          box.remove();
          try {
            const result = await call(`/console/schedules/${encodeURIComponent(schedule)}/` +
              action, { method: "POST", headers: { "Content-Type": "application/json" },
              body: "{}" });
            sessionStorage.setItem("gf-message", result.message);
            location.reload();
          } catch (error) {
            say(false, error.message);
          }
        });
        box.append(form);
        document.body.append(box);
        box.showModal();
      });
    }
  }

  function start() {
    const data = JSON.parse(document.getElementById("gf-data").textContent);
    window.GF_DATA = data;
    if (data.mode === "report") report(data);
    else if (data.mode === "list") list(data);
    else if (data.mode === "instance") instance(data);
    else if (data.mode === "schedules") schedules(data);
  }

  return { start, applyMarks, timelineTable, matches };
})();
document.addEventListener("DOMContentLoaded", GF.start);
