"""Display preferences every page needs: theme and font size, kept in cookies so pages render right first time."""

from __future__ import annotations

from django.http import HttpRequest

THEMES = ("system", "light", "dark")
FONT_SIZES = ("normal", "large", "xlarge")


def ui(request: HttpRequest) -> dict[str, str]:
    theme = request.COOKIES.get("tc_theme", "system")
    font = request.COOKIES.get("tc_font", "normal")
    return {
        "ui_theme": theme if theme in THEMES else "system",
        "ui_font": font if font in FONT_SIZES else "normal",
    }
