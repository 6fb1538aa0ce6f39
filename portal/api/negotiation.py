"""DRF's content negotiation, with a shortcut for clients that accept anything."""

from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    """Most API clients send no ``Accept`` header or ``*/*``: DRF's answer is then always
    the view's first renderer, found after parsing and sorting the header on every
    request (about a tenth of the Python calls of ``GET /account``). Any other header,
    a ``?format=`` or a format suffix goes through DRF's negotiation unchanged, 406
    included."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if (
            renderers
            and format_suffix is None
            and request.META.get("HTTP_ACCEPT", "*/*") == "*/*"
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
