// GOV.UK Frontend's components (progressive enhancement: every page works without this).
import { initAll } from "/static/govuk/govuk-frontend.min.js";
initAll();

// -- readside: the case list's filter panel collapses (MoJ filter pattern). Without JavaScript it stays open;
// with it, a "Show filters"/"Hide filters" button before the results opens and closes it. It starts closed on a
// narrow screen unless it shows an error, open on a wide one.
for (const panel of document.querySelectorAll('[data-module="app-filter"]')) {
  const place = document.getElementById("filter-toggle-place");
  if (!place) continue;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "govuk-button govuk-button--secondary govuk-!-margin-bottom-4";
  button.id = "filter-toggle";
  button.setAttribute("aria-controls", panel.id);
  const set = (open) => {
    panel.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    button.textContent = open ? "Hide filters" : "Show filters";
  };
  const narrow = window.matchMedia("(max-width: 63.9375em)").matches;
  set(!narrow || panel.querySelector(".govuk-form-group--error") !== null);
  button.addEventListener("click", () => set(panel.hidden));
  place.appendChild(button);
}
// -- end readside --
