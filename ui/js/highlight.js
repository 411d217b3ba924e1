// Syntax highlighting of the markdown renderer's finished code blocks, with the vendored
// highlight.js (ui/vendor/highlightjs/, see its README.md).
//
// Lazy and cheap: the highlighter and its grammars are imported on the first code block that names
// a language, a block is highlighted only once it is on screen (an IntersectionObserver: a long
// session's history costs nothing until it is scrolled to, and a streaming tail that is replaced
// before the next frame costs nothing at all), and results are cached by language and text, so a
// block rendered again (a streaming segment becoming final) is a clone, not a new parse.
//
// Safe: highlight.js answers with an HTML string. Its escaping is sound, but the page's rule is
// that no gateway text reaches the DOM as markup, so the string is parsed in an inert <template>
// (no scripts run, nothing loads) and rebuilt from scratch keeping only text and
// <span class="hljs-…"> elements; anything else keeps its text only. The rebuilt text must equal
// the code, or the block stays plain. (highlight.js's token tree, its "emitter", is not public.)

const VENDOR = "../vendor/highlightjs/es/";

// The grammars bin/vendor-js vendors (its HLJS_GRAMMARS); each registers its own aliases
// (py, js, ts, sh, yml, toml, html, …).
const GRAMMARS = [
  "bash", "c", "cpp", "csharp", "css", "diff", "dockerfile", "go", "ini", "java", "javascript",
  "json", "kotlin", "makefile", "markdown", "php", "python", "ruby", "rust", "shell", "sql",
  "swift", "typescript", "xml", "yaml",
];

/** Code longer than this stays plain: highlighting it would stall the page. */
export const MAX_HIGHLIGHT = 100_000;
const CACHE_SIZE = 64;

let loading = null; // Promise<hljs | null>
const cache = new Map(); // `${lang}\0${text}` -> DocumentFragment | null (insertion order = age)
const jobs = new WeakMap(); // <code> -> {lang, text}
let observer = null;

function load() {
  if (!loading) {
    loading = (async () => {
      const [core, ...grammars] = await Promise.all([
        import(`${VENDOR}core.js`),
        ...GRAMMARS.map((name) => import(`${VENDOR}languages/${name}.min.js`)),
      ]);
      const hljs = core.default;
      GRAMMARS.forEach((name, i) => hljs.registerLanguage(name, grammars[i].default));
      return hljs;
    })().catch((err) => {
      console.warn("code highlighting is unavailable:", err);
      return null;
    });
  }
  return loading;
}

/**
 * Highlight `code` (a <code> element whose text is `text`) in language `lang` once it is shown.
 * When done, code.dataset.highlight is "done", or "plain" if the language is unknown.
 */
export function highlightLater(code, lang, text) {
  if (!lang || text.length > MAX_HIGHLIGHT) {
    code.dataset.highlight = "plain";
    return;
  }
  jobs.set(code, { lang: lang.toLowerCase(), text });
  if (typeof IntersectionObserver === "undefined") {
    setTimeout(() => run(code), 0);
    return;
  }
  if (!observer) {
    observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          observer.unobserve(entry.target);
          run(entry.target);
        }
      },
      { rootMargin: "400px 0px" },
    );
  }
  observer.observe(code);
}

async function run(code) {
  const job = jobs.get(code);
  if (!job) return;
  jobs.delete(code);
  const hljs = await load();
  const frag = hljs ? highlighted(hljs, job.lang, job.text) : null;
  if (frag) {
    code.replaceChildren(frag.cloneNode(true));
    code.classList.add("hljs");
    code.dataset.highlight = "done";
  } else {
    code.dataset.highlight = "plain";
  }
}

function highlighted(hljs, lang, text) {
  const key = `${lang}\0${text}`;
  if (cache.has(key)) {
    const hit = cache.get(key);
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  let frag = null;
  if (hljs.getLanguage(lang)) {
    try {
      frag = rebuild(hljs.highlight(text, { language: lang, ignoreIllegals: true }).value);
      if (frag.textContent !== text) frag = null;
    } catch (err) {
      console.warn(`highlighting ${lang} failed:`, err);
      frag = null;
    }
  }
  cache.set(key, frag);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
  return frag;
}

const SPAN_CLASS = /^(?:hljs-[\w-]+|[\w-]+_)$/;

/** The highlighter's HTML as fresh nodes: text, and spans with highlight.js classes only. */
function rebuild(html) {
  const tpl = document.createElement("template");
  tpl.innerHTML = html; // inert: template content has no browsing context
  const out = document.createDocumentFragment();
  copyInto(out, tpl.content);
  return out;
}

function copyInto(parent, from) {
  for (const node of from.childNodes) {
    if (node.nodeType === Node.TEXT_NODE) {
      parent.appendChild(document.createTextNode(node.data));
    } else if (node.nodeType === Node.ELEMENT_NODE && node.localName === "span") {
      const span = document.createElement("span");
      const classes = [...node.classList].filter((c) => SPAN_CLASS.test(c));
      if (classes.length) span.className = classes.join(" ");
      copyInto(span, node);
      parent.appendChild(span);
    } else if (node.nodeType === Node.ELEMENT_NODE) {
      copyInto(parent, node);
    }
  }
}
