"""`Inbox.payload_for`: a deferred job carries its email events under the contact they were
resolved to, so it does not search HubSpot for the same addresses each time it comes round."""

from __future__ import annotations

from worker.process import Inbox

DELIVERED = {"type": "DELIVERED", "recipient": "a@x.test", "created": 1}
BOUNCE = {"type": "BOUNCE", "recipient": "b@x.test", "created": 2, "category": "HARD_BOUNCE"}
SCORE = {"subscriptionType": "contact.propertyChange", "objectId": 11, "propertyName": "hubspotscore"}


def test_deferred_email_events_travel_under_their_contact_and_others_stay_behind() -> None:
    inbox = Inbox.of([{"v": 1, "portal_id": 5, "source": "webhook", "contacts": {"11": [SCORE]},
                       "emails": {"a@x.test": [DELIVERED], "b@x.test": [BOUNCE], "c@x.test": [DELIVERED]},
                       "companies": {}}])
    payload = inbox.payload_for({"11", "12"}, {"a@x.test": "11", "b@x.test": "12", "c@x.test": "13"}, ["900"])
    assert payload == {"v": 1, "portal_id": 5, "source": "deferred", "deferrals": 1, "with_history": False,
                       "contacts": {"11": [SCORE, DELIVERED], "12": [BOUNCE]}, "emails": {},
                       "companies": {"900": []}}
    again = Inbox.of([payload])
    assert again.emails == {} and again.contacts["12"] == [BOUNCE] and again.deferrals == 1
