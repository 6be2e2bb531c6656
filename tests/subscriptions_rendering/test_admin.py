"""The subscription models' admin, through the test client as a superuser."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.utils.html import escape

from django_cloudevents_bridge.subscriptions import (
    ContextRenderer,
    EventActor,
    Medium,
    RenderingStyle,
    Source,
    Subscription,
    Unsubscription,
)

from .conftest import event, renderer

pytestmark = pytest.mark.django_db

URL = "/admin/django_cloudevents_bridge/"
MODELS = (
    "sourcegroup",
    "source",
    "medium",
    "subscription",
    "unsubscription",
    "event",
    "renderingstyle",
)


def errors(response) -> str:
    """The form's errors and its inlines', one a line (the page shows them)."""
    assert response.status_code == 200, response.status_code  # the form again
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += inline.formset.forms
    found = [str(e) for form in forms for es in form.errors.values() for e in es]
    page = response.content.decode()
    assert all(escape(message) in page for message in found)
    return "\n".join(found)


@pytest.fixture
def rows(medium, style, voted, admin_user):
    """One row of each model, an event with two actors, a renderer."""
    user_type = ContentType.objects.get_for_model(User)
    group = Group.objects.create(name="staff")
    Subscription.objects.create(
        medium=medium,
        source=voted,
        entity_type=ContentType.objects.get_for_model(Group),
        entity_id=str(group.pk),
        sub_entity_type=user_type,
    )
    Unsubscription.objects.create(
        medium=medium, source=voted, entity_type=user_type, entity_id=str(admin_user.pk)
    )
    stored = event(voted, {"n": 1}, subject="poll/1")
    EventActor.objects.create(
        event=stored, entity_type=user_type, entity_id=str(admin_user.pk)
    )
    renderer(style, source=voted, text_template="{{ n }}")
    return {"group": group, "event": stored}


def test_every_changelist_add_and_change_page_renders(admin_client, rows):
    for model in MODELS:
        assert admin_client.get(f"{URL}{model}/").status_code == 200, model
        add = admin_client.get(f"{URL}{model}/add/")
        assert add.status_code == (403 if model == "event" else 200), model
    objects = {
        "sourcegroup": rows["event"].source.group,
        "source": rows["event"].source,
        "medium": Subscription.objects.get().medium,
        "subscription": Subscription.objects.get(),
        "unsubscription": Unsubscription.objects.get(),
        "event": rows["event"],
        "renderingstyle": RenderingStyle.objects.get(),
    }
    for model, row in objects.items():
        page = admin_client.get(f"{URL}{model}/{row.pk}/change/")
        assert page.status_code == 200, model


def test_entities_show_as_app_model_pk_and_filter_by_medium_and_source(
    admin_client, rows, medium, voted, closed, admin_user
):
    Medium.objects.create(name="feed", display_name="Feed")  # a filter needs two
    listing = admin_client.get(f"{URL}subscription/").content.decode()
    assert f"auth.group/{rows['group'].pk}" in listing
    assert "?medium__id__exact=" in listing and "?source__id__exact=" in listing
    filtered = admin_client.get(f"{URL}unsubscription/?medium__id__exact={medium.pk}")
    assert f"auth.user/{admin_user.pk}" in filtered.content.decode()
    page = admin_client.get(f"{URL}event/{rows['event'].pk}/change/").content.decode()
    assert f"auth.user/{admin_user.pk}" in page  # the actors inline
    assert 'name="_save"' not in page  # read-only


def test_a_source_filter_that_does_not_compile_is_a_form_error(admin_client, group):
    data = {
        "name": "paid",
        "display_name": "Paid",
        "group": group.pk,
        "event_type": "order.paid",
        "actors_path": "",
        "lifetime": "",
    }
    bad = admin_client.post(
        f"{URL}source/add/", {**data, "filter": json.dumps({"cesql": "amount >"})}
    )
    assert "Not a usable filter" in errors(bad)
    bad = admin_client.post(
        f"{URL}source/add/", {**data, "filter": json.dumps({"nope": {"type": "x"}})}
    )
    assert "Not a usable filter" in errors(bad)
    good = admin_client.post(
        f"{URL}source/add/",
        {**data, "filter": json.dumps({"cesql": "INT(amount) > 100"})},
    )
    assert good.status_code == 302
    assert Source.objects.get(name="paid").filter == {"cesql": "INT(amount) > 100"}


def test_a_subscription_to_a_missing_entity_is_a_form_error(
    admin_client, medium, voted, admin_user
):
    user_type = ContentType.objects.get_for_model(User)
    data = {
        "medium": medium.pk,
        "source": voted.pk,
        "entity_type": user_type.pk,
        "sub_entity_type": "",
        "only_following": "on",
        "created_at_0": "2024-01-01",
        "created_at_1": "00:00:00",
    }
    for missing in ("999999", "not-a-number"):
        page = admin_client.post(
            f"{URL}subscription/add/", {**data, "entity_id": missing}
        )
        assert f"No user has the primary key {missing!r}" in errors(page)
    done = admin_client.post(
        f"{URL}subscription/add/", {**data, "entity_id": str(admin_user.pk)}
    )
    assert done.status_code == 302
    again = admin_client.post(
        f"{URL}subscription/add/", {**data, "entity_id": str(admin_user.pk)}
    )
    assert "dce_subscription_once" in errors(again) or "already exists" in errors(again)
    assert Subscription.objects.count() == 1
    page = admin_client.post(
        f"{URL}unsubscription/add/",
        {
            "medium": medium.pk,
            "source": voted.pk,
            "entity_type": user_type.pk,
            "entity_id": "999999",
            "created_at_0": "2024-01-01",
            "created_at_1": "00:00:00",
        },
    )
    assert "No user has the primary key" in errors(page)


def style_form(**renderer: str) -> dict[str, str]:
    """A style's add form with one renderer inline."""
    fields = {
        "name": "",
        "source": "",
        "source_group": "",
        "text_template_path": "",
        "html_template_path": "",
        "text_template": "",
        "html_template": "",
        "context_hints": "{}",
        **renderer,
    }
    return {
        "name": "rich",
        "display_name": "Rich",
        "renderers-TOTAL_FORMS": "1",
        "renderers-INITIAL_FORMS": "0",
        "renderers-MIN_NUM_FORMS": "0",
        "renderers-MAX_NUM_FORMS": "1000",
        **{f"renderers-0-{key}": value for key, value in fields.items()},
    }


def test_renderer_templates_and_hints_are_validated(admin_client, voted):
    page = admin_client.post(
        f"{URL}renderingstyle/add/",
        style_form(
            name="r1",
            source=str(voted.pk),
            text_template_path="subscriptions_rendering/gone.txt",
            html_template="{% if %}",
            context_hints=json.dumps(
                {"choice": {"app_name": "nowhere", "model_name": "Thing"}}
            ),
        ),
    )
    text = errors(page)
    assert "template 'subscriptions_rendering/gone.txt' not found" in text
    assert "template inline: " in text
    assert "no installed model nowhere.Thing" in text
    page = admin_client.post(
        f"{URL}renderingstyle/add/",
        style_form(name="r2", source=str(voted.pk), source_group=str(voted.group.pk)),
    )
    assert "Choose a source or a source group (one)." in errors(page)
    page = admin_client.post(
        f"{URL}renderingstyle/add/",
        style_form(
            name="r3", source=str(voted.pk), text_template_path="x", text_template="y"
        ),
    )
    assert "not both" in errors(page)
    assert not RenderingStyle.objects.exists()
    done = admin_client.post(
        f"{URL}renderingstyle/add/",
        style_form(
            name="r4",
            source=str(voted.pk),
            text_template_path="subscriptions_rendering/choice.txt",
            html_template="<p>{{ choice }}</p>",
            context_hints=json.dumps(
                {
                    "choice": {
                        "app_name": "testapp",
                        "model_name": "Choice",
                        "select_related": ["question"],
                    }
                }
            ),
        ),
    )
    assert done.status_code == 302
    assert ContextRenderer.objects.get().rendering_style.name == "rich"
