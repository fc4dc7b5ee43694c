// A form generated from a job type's JSON Schema (draft 2020-12, as templates/*/task.yaml
// write them): one input per property of the top-level object — a select for an enum, a
// checkbox for a boolean, a number input, a text input or (for long text) a text area for a
// string, a text area of one item per line for an array of strings, and JSON for anything else.
// The server checks the parameters again and names the field of any error.
import { h } from './dom.js';

/** resolve follows a local $ref ("#/$defs/x"); the referring schema's own keywords win. */
function resolve(root, s) {
  if (!s || !s.$ref || !s.$ref.startsWith('#/')) return s || {};
  let target = root;
  for (const part of s.$ref.slice(2).split('/')) target = target && target[part];
  const { $ref, ...own } = s;
  return { ...resolve(root, target), ...own };
}

/** kind is how a property is entered: enum, boolean, number, text, longtext, lines or json. */
function kind(root, s) {
  if (s.enum) return 'enum';
  switch (s.type) {
    case 'boolean': return 'boolean';
    case 'integer': case 'number': return 'number';
    case 'string': return s.maxLength > 2048 ? 'longtext' : 'text';
    case 'array': return resolve(root, s.items).type === 'string' ? 'lines' : 'json';
    default: return 'json';
  }
}

/** describe lists the properties of a schema: name, type, required, default, description. */
export function describe(root) {
  const required = new Set(root.required || []);
  return Object.entries(root.properties || {}).map(([name, raw]) => {
    const s = resolve(root, raw);
    let type = s.enum ? `one of ${s.enum.join(', ')}` : s.type || 'any';
    if (s.type === 'array') type = `list of ${resolve(root, s.items).type || 'any'}`;
    return { name, type, required: required.has(name), default: s.default, description: s.description || '' };
  });
}

/** FieldError is a value the form could not read. */
class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** schemaForm builds the inputs of root's properties: element, value(), fill(v), showError(), clearErrors(). */
export function schemaForm(root) {
  const required = new Set(root.required || []);
  const fields = Object.entries(root.properties || {}).map(([name, raw]) => {
    const s = resolve(root, raw);
    const k = kind(root, s);
    const attrs = { name: `param.${name}`, id: `param-${name}`, required: required.has(name) };
    let input;
    switch (k) {
      case 'enum': input = h('select', attrs, required.has(name) || s.default !== undefined ? null : h('option', { value: '' }, ''), s.enum.map((v) => h('option', { value: String(v) }, String(v)))); break;
      case 'boolean': input = h('input', { ...attrs, type: 'checkbox' }); break;
      case 'number': input = h('input', { ...attrs, type: 'number', step: s.type === 'integer' ? '1' : 'any' }); break;
      case 'text': input = h('input', { ...attrs, type: 'text', autocomplete: 'off', spellcheck: false }); break;
      case 'longtext': input = h('textarea', { ...attrs, rows: 6, spellcheck: false }); break;
      case 'lines': input = h('textarea', { ...attrs, rows: 3, spellcheck: false, placeholder: 'one per line' }); break;
      default: input = h('textarea', { ...attrs, rows: 3, spellcheck: false, placeholder: 'JSON' });
    }
    const error = h('small', { class: 'error', id: `error-${name}` });
    const label = h('label', { class: 'row', dataset: { field: name } },
      h('span', {}, name, required.has(name) ? h('abbr', { title: 'required' }, ' *') : null),
      input, s.description ? h('small', {}, s.description) : null, error);
    const f = { name, s, k, input, label, error };
    set(f, s.default);
    return f;
  });

  function set(f, v) {
    switch (f.k) {
      case 'boolean': f.input.checked = !!v; break;
      case 'lines': f.input.value = Array.isArray(v) ? v.join('\n') : ''; break;
      case 'json': f.input.value = v === undefined ? '' : JSON.stringify(v, null, 2); break;
      default: f.input.value = v === undefined || v === null ? '' : String(v);
    }
  }

  function get(f) {
    const raw = f.input.value;
    switch (f.k) {
      case 'boolean': return f.input.checked;
      case 'number':
        if (raw === '') return undefined;
        if (isNaN(Number(raw))) throw new FieldError(f.name, 'want a number');
        return Number(raw);
      case 'lines': {
        const items = raw.split('\n').map((l) => l.trim()).filter(Boolean);
        return items.length || required.has(f.name) ? items : undefined;
      }
      case 'json':
        if (raw.trim() === '') return undefined;
        try { return JSON.parse(raw); } catch (e) { throw new FieldError(f.name, `not JSON: ${e.message}`); }
      default: return raw === '' && !required.has(f.name) ? undefined : raw;
    }
  }

  return {
    element: h('div', { class: 'params-form' }, fields.map((f) => f.label)),
    value() {
      const out = {};
      for (const f of fields) {
        const v = get(f);
        if (v !== undefined) out[f.name] = v;
      }
      return out;
    },
    fill(values) { for (const f of fields) if (values[f.name] !== undefined) set(f, values[f.name]); },
    showError(field, message) {
      const top = (field || '').split(/[./[]/)[0];
      const f = fields.find((x) => x.name === top);
      if (!f) return;
      f.error.textContent = message;
      f.label.classList.add('invalid');
      f.input.focus();
    },
    clearErrors() {
      for (const f of fields) {
        f.error.textContent = '';
        f.label.classList.remove('invalid');
      }
    },
  };
}
