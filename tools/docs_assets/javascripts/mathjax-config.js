// MathJax 3 for the MkDocs build: arithmatex wraps math as \( \) / \[ \] in .arithmatex elements; page titles
// repeated in the header and the previous/next footer, and search results, carry \( \) too.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    tags: "ams"
  },
  svg: { fontCache: "global" },
  options: {
    // An element with any class is skipped (with what is inside it, class-less elements inheriting) unless it has
    // one of these: arithmatex's math, the page titles (.md-ellipsis) that the sidebar, header and footer repeat,
    // and search results.
    ignoreHtmlClass: ".+",
    processHtmlClass: "arithmatex|md-ellipsis|md-search-result__article"
  }
};

// Search results are added after the page loaded: typeset them as they appear.
document.addEventListener("DOMContentLoaded", function () {
  var list = document.querySelector(".md-search-result__list");
  if (!list) return;
  var pending;
  new MutationObserver(function () {
    clearTimeout(pending);
    pending = setTimeout(function () {
      if (window.MathJax && MathJax.typesetPromise) MathJax.typesetPromise([list]);
    }, 50);
  }).observe(list, { childList: true });
});
