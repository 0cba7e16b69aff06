// The order builder's region picker: search regions by name (the reader's language,
// the region's own, English or ISO code), choose several, see names, submit codes.
// Without this script the field is a plain text box that takes names and codes.
(() => {
  function setUp(picker) {
    const input = picker.querySelector("input.region-value");
    const search = picker.querySelector("input.region-search");
    const list = picker.querySelector(".region-options");
    const chips = picker.querySelector(".region-chips");
    const source = picker.dataset.source;
    let chosen = JSON.parse(picker.dataset.chosen || "[]"); // [{code, name}]
    let options = [];
    let active = -1;
    let asked = 0;

    input.type = "hidden";
    search.hidden = false;
    chips.hidden = false;

    function save(notify) {
      input.value = chosen.map((c) => c.code).join(", ");
      if (notify) input.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function drawChips() {
      chips.replaceChildren(...chosen.map((c) => {
        const chip = document.createElement("span");
        chip.className = "badge rounded-pill text-bg-light border region-chip";
        chip.dataset.code = c.code;
        chip.append(c.name + " ");
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "btn-close btn-close-sm";
        remove.setAttribute("aria-label", `Remove ${c.name}`);
        remove.addEventListener("click", () => {
          chosen = chosen.filter((other) => other.code !== c.code);
          drawChips();
          save(true);
          search.focus();
        });
        chip.append(remove);
        return chip;
      }));
    }

    function close() {
      list.hidden = true;
      search.setAttribute("aria-expanded", "false");
      search.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(index) {
      active = index;
      list.querySelectorAll("[role=option]").forEach((item, i) => {
        item.classList.toggle("active", i === index);
        item.setAttribute("aria-selected", i === index ? "true" : "false");
        if (i === index) {
          search.setAttribute("aria-activedescendant", item.id);
          item.scrollIntoView({ block: "nearest" });
        }
      });
    }

    function pick(option) {
      if (!chosen.some((c) => c.code === option.code)) {
        chosen.push({ code: option.code, name: option.name });
      }
      drawChips();
      save(true);
      search.value = "";
      close();
      search.focus();
    }

    function draw() {
      list.replaceChildren(...options.map((o, i) => {
        const item = document.createElement("li");
        item.id = `${list.id}-${i}`;
        item.className = "list-group-item list-group-item-action region-option";
        item.setAttribute("role", "option");
        item.dataset.code = o.code;
        const name = document.createElement("span");
        name.className = "region-option-name";
        name.textContent = o.name;
        const where = document.createElement("span");
        where.className = "small text-body-secondary ms-1";
        const local = o.local_name !== o.name ? `${o.local_name} · ` : "";
        where.textContent = `${local}${o.country} · ${o.code}`;
        item.append(name, where);
        item.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus
        item.addEventListener("click", () => pick(o));
        return item;
      }));
      if (!options.length && search.value.trim()) {
        const none = document.createElement("li");
        none.className = "list-group-item text-body-secondary small";
        none.textContent = "No region of that name; the order form also takes ISO codes.";
        list.append(none);
      }
      list.hidden = !search.value.trim();
      search.setAttribute("aria-expanded", list.hidden ? "false" : "true");
      highlight(options.length ? 0 : -1);
    }

    async function ask() {
      const query = search.value.trim();
      const ticket = ++asked;
      if (!query) {
        options = [];
        close();
        return;
      }
      const response = await fetch(`${source}?q=${encodeURIComponent(query)}`,
                                   { headers: { Accept: "application/json" } });
      if (ticket !== asked || !response.ok) return; // a newer search is on its way
      options = await response.json();
      draw();
    }

    let timer;
    // The builder refreshes its estimate on any input in the form: searching is not one.
    search.addEventListener("input", (event) => {
      event.stopPropagation();
      clearTimeout(timer);
      timer = setTimeout(ask, 150);
    });
    search.addEventListener("change", (event) => event.stopPropagation());
    search.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" && options.length) {
        event.preventDefault();
        highlight((active + 1) % options.length);
      } else if (event.key === "ArrowUp" && options.length) {
        event.preventDefault();
        highlight((active - 1 + options.length) % options.length);
      } else if (event.key === "Enter") {
        event.preventDefault(); // Enter here chooses a region, it does not place the order
        if (active >= 0 && options[active]) pick(options[active]);
      } else if (event.key === "Escape") {
        close();
      } else if (event.key === "Backspace" && !search.value && chosen.length) {
        chosen.pop();
        drawChips();
        save(true);
      }
    });
    search.addEventListener("blur", () => setTimeout(close, 100));
    // Text left in the search box is sent as typed: the server reads region names too.
    picker.closest("form").addEventListener("submit", () => {
      const typed = search.value.trim();
      if (typed) input.value = [input.value, typed].filter(Boolean).join(", ");
    });

    drawChips();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-region-picker]").forEach(setUp);
  });
})();
