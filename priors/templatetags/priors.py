"""The study page's priors section: ``{% load priors %}{% study_priors study %}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template

from priors import selectors
from studies.models import Study

register = template.Library()

# The bundled viewer by path (as the study page's own "Open images" link).
VIEWER_PATH = "/viewer/"
VIEWER_WINDOW = "telerad-viewer"


@register.inclusion_tag("priors/_study_priors.html")
def study_priors(study: Study) -> dict[str, Any]:
    """The relevant priors of ``study`` with a viewer link for each retrieved one
    (the page has decided that the user may see ``study``; its retrieved priors are
    visible to whoever sees it, see access.selectors)."""
    priors = list(selectors.prior_studies_of(study=study))
    rows = [
        {
            "prior": p,
            "viewer_url": (
                f"{VIEWER_PATH}?{urlencode({'StudyInstanceUIDs': p.study_instance_uid})}"
                if p.status == p.Status.RETRIEVED
                else ""
            ),
        }
        for p in priors
    ]
    return {
        "study": study,
        "fetch": selectors.prior_fetch_of(study=study),
        "rows": rows,
        "viewer_window": VIEWER_WINDOW,
    }
