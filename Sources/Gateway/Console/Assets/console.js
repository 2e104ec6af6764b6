// Aspire console: small enhancements; every page works without this file.

// Buttons marked .danger ask first.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.classList.contains("danger")) {
    const what = button.getAttribute("aria-label") || button.textContent;
    if (!window.confirm(`${what}?`)) event.preventDefault();
  }
});
