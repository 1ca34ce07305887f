"""Sound the browser would not start by itself: Safari on an iPhone starts no sound that no tap started unless the
page is capturing the camera or microphone, so a patient who refused them would hear nothing, and be told
nothing. Chromium (which lets a call's sound start) is given Safari's rule in the page, as other tests shape what
getStats says: play() of an element with sound is refused (NotAllowedError) until the person has tapped the
page.
The call page's reaction is real: it shows "Activar el sonido", and the tap starts the practitioner's sound."""

from __future__ import annotations

import pytest

from tests.browser_checks import assert_accessible
from tests.video.call_network_support import wait_until
from tests.video.signalling_support import signed_in_cookie
from tests.video.test_call_browser import STATS, _page, _wait_for_media, daphne, wait_then_admit  # noqa: F401
from tests.video.test_call_pages import hosted_visit
from tests.video.test_lobby_browser import REFUSED

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLAYING = "() => Array.from(document.querySelectorAll('[data-remotes] audio')).map((a) => !a.paused)"

# Safari's rule for starting sound, for a page that captures nothing (the devices are refused: REFUSED).
SAFARI_SOUND_RULE = """
(() => {
  // A tap of the person's: trusted input only (Playwright's evaluate marks its calls as gestures, so the
  // browser's own user-activation flag would count the test's reading of the page as one).
  let tapped = false;
  for (const kind of ["pointerdown", "keydown"]) {
    window.addEventListener(kind, (event) => { if (event.isTrusted) { tapped = true; } }, true);
  }
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (!this.muted && !tapped) {
      return Promise.reject(new DOMException("The request is not allowed by the user agent.", "NotAllowedError"));
    }
    return play.call(this);
  };
})();
"""


def test_a_patient_whose_browser_blocks_sound_is_asked_to_tap(browser, personas, daphne):  # noqa: F811
    visit = hosted_visit(personas)
    public_id = visit.appointment.public_id
    patient = _page(browser, daphne, signed_in_cookie(personas.patient))
    patient.context.add_init_script(REFUSED)
    patient.context.add_init_script(SAFARI_SOUND_RULE)
    practitioner = _page(browser, daphne, signed_in_cookie(personas.practitioner))
    try:
        wait_then_admit(patient, practitioner, public_id)

        # No device of the patient's is open and nothing on the page was tapped: the browser refuses to start the
        # practitioner's sound, and the page says so with a button.
        button = patient.get_by_role("button", name="Activar el sonido")
        button.wait_for()
        assert patient.locator("[data-play-sound]").get_by_text("Su navegador no inició el sonido").is_visible()
        stats = patient.evaluate(STATS)
        assert stats["soundBlocked"] is True and stats["mediaError"] == "NotAllowedError", stats
        assert patient.evaluate(PLAYING) == [False]
        assert_accessible(patient, context="the call with its sound blocked")

        # The tap starts it: the sound plays and is heard (energy received), and the button goes.
        button.click()
        wait_until(lambda: patient.evaluate(PLAYING) == [True], timeout=10, message="the sound did not start")
        assert not button.is_visible()
        assert patient.evaluate(STATS)["soundBlocked"] is False
        _wait_for_media(patient)
    finally:
        patient.context.close()
        practitioner.context.close()
