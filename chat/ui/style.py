"""The page's own CSS and start-up script (``launch(css=..., js=...)``): phones and window height.

On a phone (at most 768 px wide) the chat and the message box come first: "My conversations" is a
``gr.Sidebar`` that starts closed there (Gradio opens a sidebar as given, and on a narrow screen an
open one covers the whole page), and closes again once a conversation is picked or a new one
started from it; the panels (keys, painter, versions, options) stack under the chat, each an
accordion, the painter at the full width. On a desktop the sidebar starts open and the chat takes
the window's height (``CHAT_HEIGHT`` in chat/ui/layout.py). tests/test_browser_phone.py looks at both.
"""

from __future__ import annotations

__all__ = ["PAGE_CSS", "PAGE_JS", "PHONE_MAX_WIDTH_PX"]

PHONE_MAX_WIDTH_PX = 768  # Gradio's own breakpoint: narrower, a sidebar takes the full width

PAGE_CSS = f"""
@media (max-width: {PHONE_MAX_WIDTH_PX}px) {{
  .gradio-container {{ padding-left: 8px !important; padding-right: 8px !important; }}
  #intro {{ display: none; }}  /* the chat's placeholder says the same, in the space the chat needs */
  #workspace {{ gap: 8px; }}
  #chat {{ height: max(320px, calc(100dvh - 330px)) !important; }}  /* room for the caption and a grown box */
  #painter {{ width: 100% !important; }}
}}
"""

PAGE_JS = f"""() => {{
  const phone = window.matchMedia('(max-width: {PHONE_MAX_WIDTH_PX}px)');
  const closeSidebar = () => {{
    const bar = document.querySelector('#library-sidebar');
    if (!bar) return false;
    if (phone.matches && bar.classList.contains('open')) bar.querySelector('.toggle-button')?.click();
    return true;
  }};
  if (!closeSidebar()) {{
    const watch = new MutationObserver(() => {{ if (closeSidebar()) watch.disconnect(); }});
    watch.observe(document.body, {{ childList: true, subtree: true }});
  }}
  // On a phone the open sidebar covers the chat: a pick in it (a conversation, "New conversation")
  // closes it, so what was picked is what shows.
  document.addEventListener('click', (event) => {{
    if (!phone.matches) return;
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest('#conversations .thumbnail-item, #conversations button, #new-conversation')) {{
      setTimeout(closeSidebar, 50);
    }}
  }}, true);
}}"""
