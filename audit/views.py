from django.http import HttpRequest, HttpResponse


def events(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=501)
