// nbmill inside JupyterLab: a sidebar to run the project's pipelines, follow a run step by step,
// cancel it, review recent runs (report, executed notebooks, diff against the previous run),
// and see which pipeline steps use the notebook being edited, with their parameters or what no
// longer matches. Everything goes through the nbmill.lab server extension (/nbmill/api/), on
// Jupyter Server's own authentication.

import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

async function api(path: string, init: RequestInit = {}): Promise<Json> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'nbmill/api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  }
  return body;
}

function el(
  tag: string,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child);
  }
  return node;
}

function seconds(step: Json): string {
  if (typeof step.duration_s === 'number') {
    return `${step.duration_s.toFixed(1)} s`;
  }
  if (step.started_at) {
    const began = Date.parse(step.started_at);
    return `${((Date.now() - began) / 1000).toFixed(1)} s`;
  }
  return '';
}

class Sidebar extends Widget {
  private pipelines = el('div', { class: 'nbmill-pipelines' });
  private job = el('div', { class: 'nbmill-job' });
  private runs = el('div', { class: 'nbmill-runs' });
  private notebook = el('div', { class: 'nbmill-notebook' });
  private runsBase: string | null = null;
  private timer: number | null = null;

  constructor(
    private app: JupyterFrontEnd,
    private docs: IDocumentManager
  ) {
    super();
    this.id = 'nbmill-sidebar';
    this.title.caption = 'nbmill';
    this.title.label = 'nbmill';
    this.addClass('nbmill-sidebar');
    this.node.append(
      el('h2', {}, 'Pipelines'),
      this.pipelines,
      el('h2', {}, 'This run'),
      this.job,
      el('h2', {}, 'Runs'),
      this.runs,
      el('h2', {}, 'This notebook'),
      this.notebook
    );
    this.job.append(el('p', { class: 'nbmill-muted' }, 'No run started here yet.'));
    this.notebook.append(el('p', { class: 'nbmill-muted' }, 'Open a notebook.'));
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const found = await api('pipelines');
      this.runsBase = found.runs_path;
      this.showPipelines(found);
    } catch (error) {
      this.pipelines.replaceChildren(el('p', { class: 'nbmill-error' }, String(error)));
    }
    await this.refreshRuns();
  }

  private showPipelines(found: Json): void {
    const rows = found.pipelines.map((pipeline: Json) => {
      const params = el('select', { class: 'nbmill-params' });
      params.append(el('option', { value: '' }, '(no params file)'));
      for (const file of found.params) {
        params.append(el('option', { value: file }, file));
      }
      const reason = el('input', {
        class: 'nbmill-reason',
        placeholder: 'why this run'
      }) as HTMLInputElement;
      const overrides = el('input', {
        class: 'nbmill-overrides',
        placeholder: 'step.key=value ...'
      }) as HTMLInputElement;
      const force = el('input', { type: 'checkbox', class: 'nbmill-force' }) as HTMLInputElement;
      const request = (extra: Json) => ({
        pipeline: pipeline.path,
        params: (params as HTMLSelectElement).value || null,
        reason: reason.value,
        overrides: overrides.value.split(/\s+/).filter(Boolean),
        force_all: force.checked,
        ...extra
      });
      const run = el('button', { class: 'nbmill-run jp-mod-styled' }, 'Run');
      run.onclick = () => void this.start(request({}));
      // Each step: run it alone (what it needs from the cache), or from it on.
      const steps = el('div', { class: 'nbmill-steps' });
      for (const step of pipeline.steps) {
        const one = el('button', { class: 'nbmill-only', title: 'run this step alone' }, 'only');
        one.onclick = () => void this.start(request({ only: [step.name], force: [step.name] }));
        const from = el('button', { class: 'nbmill-from', title: 'run from this step on' }, 'from');
        from.onclick = () => void this.start(request({ force: [step.name] }));
        steps.append(
          el(
            'div',
            { class: 'nbmill-step-row', 'data-step': step.name },
            el('span', {}, step.name),
            el('span', { class: 'nbmill-muted' }, step.needs.length ? ` after ${step.needs.join(', ')} ` : ' '),
            one,
            from
          )
        );
      }
      return el(
        'div',
        { class: 'nbmill-pipeline', 'data-pipeline': pipeline.path },
        el('div', { class: 'nbmill-title' }, `${pipeline.name}`, el('span', { class: 'nbmill-muted' }, ` ${pipeline.path}`)),
        pipeline.problem ? el('p', { class: 'nbmill-error' }, pipeline.problem) : steps,
        params,
        reason,
        overrides,
        el('label', { class: 'nbmill-force-label' }, force, ' execute every step (no cache)'),
        run
      );
    });
    this.pipelines.replaceChildren(...rows);
  }

  private async start(body: Json): Promise<void> {
    try {
      const job = await api('runs', { method: 'POST', body: JSON.stringify(body) });
      this.follow(job.id);
    } catch (error) {
      this.job.replaceChildren(el('p', { class: 'nbmill-error' }, String(error)));
    }
  }

  private follow(jobId: string): void {
    if (this.timer !== null) {
      window.clearInterval(this.timer);
    }
    const tick = async () => {
      const state = await api(`jobs/${jobId}`);
      this.showJob(state);
      if (state.state !== 'running') {
        window.clearInterval(this.timer!);
        this.timer = null;
        await this.refreshRuns();
      }
    };
    this.timer = window.setInterval(() => void tick(), 400);
    void tick();
  }

  private showJob(state: Json): void {
    const run = state.run;
    const cancel = el('button', { class: 'nbmill-cancel jp-mod-styled' }, 'Cancel');
    cancel.onclick = () => void api(`jobs/${state.id}`, { method: 'DELETE' });
    const status = run ? run.status : state.state === 'running' ? 'starting' : state.state;
    const header = el(
      'div',
      { class: 'nbmill-title' },
      el('span', { class: `nbmill-status nbmill-${status}`, 'data-status': status }, status),
      ` ${run ? run.id : state.id}`
    );
    const children: Node[] = [header];
    if (run) {
      for (const [name, step] of Object.entries<Json>(run.steps)) {
        const shown = step.status;
        children.push(
          el(
            'div',
            { class: 'nbmill-step', 'data-step': name, 'data-status': shown },
            el('span', { class: `nbmill-status nbmill-${shown}` }, shown),
            ` ${name} `,
            el('span', { class: 'nbmill-muted' }, seconds(step))
          )
        );
      }
      if (run.error) {
        const where = run.error.cell !== undefined && run.error.cell !== null ? ` (cell ${run.error.cell})` : '';
        children.push(
          el(
            'pre',
            { class: 'nbmill-error nbmill-failure' },
            `${run.error.step}${where}: ${run.error.type}: ${run.error.message}`
          )
        );
      }
    } else if (state.state !== 'running') {
      children.push(el('pre', { class: 'nbmill-error nbmill-failure' }, state.log));
    }
    if (state.state === 'running') {
      children.push(cancel);
    }
    this.job.replaceChildren(...children);
  }

  async refreshRuns(): Promise<void> {
    try {
      const rows = await api('runs?limit=20');
      this.runs.replaceChildren(...rows.map((row: Json, i: number) => this.runRow(row, rows[i + 1])));
      if (!rows.length) {
        this.runs.append(el('p', { class: 'nbmill-muted' }, 'No runs yet.'));
      }
    } catch (error) {
      this.runs.replaceChildren(el('p', { class: 'nbmill-error' }, String(error)));
    }
  }

  private runRow(row: Json, previous: Json | undefined): HTMLElement {
    const report = el('button', { class: 'nbmill-report jp-mod-styled' }, 'Report');
    report.onclick = () => this.openReport(row.id);
    const notebooks = el('button', { class: 'nbmill-notebooks jp-mod-styled' }, 'Notebooks');
    notebooks.onclick = () => void this.openNotebooks(row.id);
    const buttons: Node[] = [report, notebooks];
    if (previous) {
      const diff = el('button', { class: 'nbmill-diff jp-mod-styled' }, 'Diff');
      diff.onclick = () => void this.openDiff(previous.id, row.id);
      buttons.push(diff);
    }
    const metrics = Object.entries(row)
      .filter(([key]) => !['id', 'when', 'who', 'why', 'status'].includes(key))
      .map(([key, value]) => `${key}=${typeof value === 'number' ? Number(value.toPrecision(4)) : value ?? ''}`)
      .join(' ');
    return el(
      'div',
      { class: 'nbmill-run-row', 'data-run': row.id, 'data-status': row.status },
      el('div', {}, el('span', { class: `nbmill-status nbmill-${row.status}` }, row.status), ` ${row.id}`),
      el('div', { class: 'nbmill-muted' }, `${row.when ?? ''} ${row.who ?? ''}: ${row.why ?? ''}`),
      el('div', { class: 'nbmill-muted' }, metrics),
      ...buttons
    );
  }

  private filesUrl(path: string): string {
    return URLExt.join(PageConfig.getBaseUrl(), 'files', URLExt.encodeParts(path));
  }

  private openReport(runId: string): void {
    // A browser tab of its own: the report's links (each step's page, the ledger) work as they
    // do from the file system, which a sandboxed frame inside Lab would not allow.
    if (this.runsBase !== null) {
      window.open(this.filesUrl(`${this.runsBase}/${runId}/index.html`), '_blank');
    }
  }

  private async openNotebooks(runId: string): Promise<void> {
    const run = await api(`runs/${runId}`);
    for (const [name, step] of Object.entries<Json>(run.steps)) {
      if (!step.executed || this.runsBase === null) {
        continue;
      }
      // A record, read, not run: no kernel is started for it.
      const widget = this.docs.openOrReveal(
        `${this.runsBase}/${runId}/${step.executed}`,
        undefined,
        undefined,
        {},
        { shouldStart: false, canStart: false }
      );
      if (widget instanceof NotebookPanel) {
        await widget.context.ready;
        widget.content.model!.readOnly = true;
        widget.title.label = `${name} (${runId})`;
      }
    }
  }

  private async openDiff(a: string, b: string): Promise<void> {
    const diff = await api(`diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    const content = new Widget();
    content.addClass('nbmill-diff-view');
    content.node.append(el('pre', {}, diff.text));
    const widget = new MainAreaWidget({ content });
    widget.title.label = `Diff ${a} \u2192 ${b}`;
    widget.title.closable = true;
    this.app.shell.add(widget, 'main');
  }

  async showNotebook(path: string | null): Promise<void> {
    if (!path || !path.endsWith('.ipynb')) {
      this.notebook.replaceChildren(el('p', { class: 'nbmill-muted' }, 'Open a notebook.'));
      return;
    }
    try {
      const found = await api(`notebook?path=${encodeURIComponent(path)}`);
      if (!found.uses.length) {
        this.notebook.replaceChildren(el('p', { class: 'nbmill-muted' }, `${path}: no pipeline step uses it.`));
        return;
      }
      this.notebook.replaceChildren(
        ...found.uses.map((use: Json) =>
          el(
            'div',
            { class: 'nbmill-use', 'data-step': use.step },
            el('div', { class: 'nbmill-title' }, `${use.pipeline}: step ${use.step}`),
            use.problem
              ? el('pre', { class: 'nbmill-error nbmill-warning' }, use.problem)
              : el(
                  'table',
                  { class: 'nbmill-parameters' },
                  ...Object.entries<Json>(use.parameters).map(([name, p]) =>
                    el('tr', {}, el('td', {}, name), el('td', {}, JSON.stringify(p.value)), el('td', { class: 'nbmill-muted' }, p.from))
                  )
                )
          )
        )
      );
    } catch (error) {
      this.notebook.replaceChildren(el('p', { class: 'nbmill-error' }, String(error)));
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbmill-lab:sidebar',
  description: 'Run nbmill pipelines, follow them and review their runs.',
  autoStart: true,
  requires: [IDocumentManager, INotebookTracker],
  optional: [ILabShell],
  activate: (
    app: JupyterFrontEnd,
    docs: IDocumentManager,
    notebooks: INotebookTracker
  ) => {
    const sidebar = new Sidebar(app, docs);
    app.shell.add(sidebar, 'left', { rank: 200 });
    const current = () => {
      const panel = notebooks.currentWidget;
      void sidebar.showNotebook(panel ? panel.context.path : null);
      if (panel) {
        panel.context.fileChanged.connect(() => void sidebar.showNotebook(panel.context.path));
      }
    };
    notebooks.currentChanged.connect(current);
    current();
  }
};

export default plugin;
