"""BabyGPT's web app: ``python app.py`` locally, or unchanged as a Hugging Face Space."""

from __future__ import annotations

import argparse
import os

import gradio as gr

from babygpt.ui import CSS, build_app

# System fonts: the default theme fetches Google Fonts, which an offline machine cannot reach.
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the BabyGPT web app.")
    # A Space sets GRADIO_SERVER_NAME/PORT; locally the app listens on this machine only.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), help="port")
    parser.add_argument("--share", action="store_true", help="also serve through a temporary public gradio.live link")
    args = parser.parse_args()
    app = build_app()
    app.queue(default_concurrency_limit=4)
    # gradio keeps each session's copy of the page (about 0.7 MB here) even after the visitor
    # has gone, up to this many sessions: its default of 10,000 would grow to gigabytes on a
    # public Space. The least recently used beyond this are dropped (bench/load_test.py --minutes).
    max_sessions = int(os.environ.get("BABYGPT_MAX_SESSIONS", 500))
    app.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS, theme=THEME,
               max_file_size="5mb", state_session_capacity=max_sessions)


if __name__ == "__main__":
    main()
