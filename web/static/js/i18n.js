// Translated strings for scripts: the page embeds them as JSON (data, not code).
const strings = (() => {
  const node = document.getElementById("i18n-data");
  try {
    return node ? JSON.parse(node.textContent || "{}") : {};
  } catch {
    return {};
  }
})();

export function t(key, params = {}) {
  const text = Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole);
}
