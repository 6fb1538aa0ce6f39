// Copy buttons: <button data-copy-target="#input-id">. Delegated, so it also works on
// content that htmx swaps in.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const input = document.querySelector(button.dataset.copyTarget);
  const status = button.parentElement.querySelector(".copy-status");
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand("copy"); // plain-HTTP pages have no clipboard API
  }
  if (status) status.textContent = "Copied";
});

// The Menu button of narrow screens shows and hides the site navigation (portal.css).
document.addEventListener("click", (event) => {
  const toggle = event.target.closest(".nav-toggle");
  if (!toggle) return;
  toggle.setAttribute("aria-expanded", String(toggle.getAttribute("aria-expanded") !== "true"));
});
