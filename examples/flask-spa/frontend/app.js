// The frontend: two pages drawn in the browser from the API's JSON, "/" (the items) and
// "/about" (the API's environment). Links between them change the URL with the History API
// instead of loading a new page; nginx answers any other path with index.html, so a reload
// or a bookmark of /about works too.

// The API's base URL from <meta name="api-base">; empty: this page's own origin.
const apiBase = document.querySelector('meta[name="api-base"]').content.replace(/\/+$/, "");
const main = document.getElementById("main");

async function api(path) {
  const response = await fetch(`${apiBase}/api/${path}`);
  if (!response.ok) throw new Error(`the API answered ${response.status}`);
  return response.json();
}

// An element with the given attributes and children (strings become text, never HTML).
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const pages = {
  "/": {
    title: "Items",
    async body() {
      const [items, health] = await Promise.all([api("items"), api("health")]);
      return [
        el("ul", { id: "items" }, ...items.map((item) => el("li", {}, item.title))),
        el("p", { id: "api-version" }, `API version ${health.version}`),
      ];
    },
  },
  "/about": {
    title: "About",
    async body() {
      const info = await api("info");
      return [
        el("p", {}, "A single-page frontend for a small Flask API."),
        el("p", { id: "api-environment" }, `The API runs in the ${info.environment} environment.`),
      ];
    },
  },
};

const notFound = {
  title: "Not found",
  async body() {
    return [el("p", {}, "There is no page here. ", el("a", { href: "/" }, "See the items."))];
  },
};

let shown = 0;

async function show({ focus = false } = {}) {
  const page = pages[location.pathname] ?? notFound;
  const ticket = ++shown;
  document.title = `${page.title} - flask-spa`;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.pathname === location.pathname) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const heading = el("h1", {}, page.title);
  main.replaceChildren(heading, el("p", { role: "status" }, "Loading…"));
  if (focus) main.focus();
  let body;
  try {
    body = await page.body();
  } catch (error) {
    body = [el("p", { id: "error", role: "alert" }, `Could not load this page: ${error.message}.`)];
  }
  // A later navigation wins over this one's slower answer.
  if (ticket === shown) main.replaceChildren(heading, ...body);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
      || event.shiftKey || event.altKey || link.target || link.origin !== location.origin
      || !(link.pathname in pages)) return;
  event.preventDefault();
  if (link.pathname !== location.pathname) history.pushState(null, "", link.pathname);
  show({ focus: true });
});

window.addEventListener("popstate", () => show({ focus: true }));

show();
