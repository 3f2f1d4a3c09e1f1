"""The app started as a Hugging Face Space starts it: gradio sees a Space (``SYSTEM=spaces``,
``SPACE_ID``) with OAuth configured, so the Hub tab renders "Sign in with Hugging Face", which
needs gradio's ``oauth`` extra (authlib). Nothing here reaches huggingface.co: the OAuth provider
is a closed port on 127.0.0.1 that only a visitor's click on "Sign in" would ask."""

import json

import httpx
from gradio_client import Client

from conftest import free_port, running_app


def test_a_space_start_serves_the_page_with_sign_in_and_needs_no_hub():
    nowhere = f"http://127.0.0.1:{free_port()}"
    space = {"SYSTEM": "spaces", "SPACE_ID": "babygpt/babygpt", "SPACE_HOST": "babygpt-babygpt.hf.space",
             "OAUTH_CLIENT_ID": "test-client", "OAUTH_CLIENT_SECRET": "test-secret", "OAUTH_SCOPES": "openid profile",
             "OPENID_PROVIDER_URL": nowhere, "HF_ENDPOINT": nowhere}
    with running_app(**space) as url:
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        config = json.dumps(httpx.get(f"{url}config", timeout=10).json())
        assert "Sign in with Hugging Face" in config
        assert "Duplicate this Space to train without waiting" in config
        # the login route is gradio's real one (a Space's), not the local mock
        login = httpx.get(f"{url}login/huggingface", timeout=10, follow_redirects=False)
        assert login.status_code != 404
        # the tabs work without the Hub
        client = Client(url, verbose=False, analytics_enabled=False)
        _, texts, _, _ = client.predict(["gpt"], "Hamlet:", 10, 0.0, 0, 1.0, 0, api_name="/compare")
        assert texts["gpt"].startswith("Hamlet:")


def test_run_locally_the_page_has_no_duplicate_button():
    from babygpt.ui import build_app

    labels = [block.get_config().get("value") for block in build_app().blocks.values()]
    assert "Walk through the forward pass" in labels  # buttons are found by their text
    assert "Sign in with Hugging Face" not in labels and not any(
        isinstance(label, str) and label.startswith("Duplicate this Space") for label in labels)
