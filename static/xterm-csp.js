// xterm.js under the dashboard's Content-Security-Policy, which allows styles from the page's
// own files only (`style-src 'self'`, no inline `<style>`).
//
// xterm.js 6's DOM renderer writes its CSS (theme colours, cell sizes, the scrollbar's
// colours) into `<style>` elements it makes with `document.createElement("style")`, fills
// through `textContent` and ends with `remove()`. The browser refuses those (a CSP violation
// each, and the screen would lose its colours and cell sizes): Chromium checks every inline
// `<style>` that enters the document, whatever its type or media. A constructed stylesheet
// (`new CSSStyleSheet()`, `document.adoptedStyleSheets`) is no inline style: CSP lets the
// page's own script make one. So, once installed, `createElement("style")` gives xterm.js a
// `<template>` (never rendered, no CSS, nothing to check) whose `textContent` goes to a
// constructed sheet of its own, which leaves with the element. Only xterm.js makes `<style>`
// elements in this page.

let installed = false;

/** Route script-made `<style>` elements of `doc` through constructed stylesheets. */
export function installConstructedStyles(doc = document) {
  if (installed) return;
  installed = true;
  const create = doc.createElement.bind(doc);
  doc.createElement = (tag, options) => {
    if (String(tag).toLowerCase() !== "style") return create(tag, options);
    const el = create("template");
    adopt(doc, el);
    return el;
  };
}

function adopt(doc, el) {
  el.dataset.constructedStyle = "";
  const sheet = new CSSStyleSheet();
  let text = "";
  let attached = false;
  Object.defineProperty(el, "textContent", {
    configurable: true,
    get: () => text,
    set: (value) => {
      text = value == null ? "" : String(value);
      sheet.replaceSync(text);
      if (!attached) {
        doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
        attached = true;
      }
    },
  });
  const remove = el.remove.bind(el);
  el.remove = () => {
    doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
    attached = false;
    remove();
  };
}
