"""The generator's phrasings: per topic and kind of clue, plus openings, closings and fillers.

`{slot}` is filled from SLOTS (synonyms) or by the generator (`{order}`, `{amount}`, `{name}`, ...). Every
third phrasing of a pool is held out for the eval split (`held_out`), so eval tickets are not worded like
training tickets; the synonym pools are shared, they are words, not phrasings.
"""

from __future__ import annotations

from fmops.quickstart.rules import Category, Kind

SLOTS: dict[str, tuple[str, ...]] = {
    "charged": ("charged", "billed", "debited"),
    "twice": ("twice", "two times", "double"),
    "refund": ("refund", "reimbursement", "money back"),
    "invoice": ("invoice", "bill"),
    "parcel": ("parcel", "package", "order", "delivery"),
    "courier": ("courier", "driver", "delivery guy"),
    "app": ("app", "dashboard", "web app", "desktop client", "mobile app"),
    "crashes": ("crashes", "freezes", "closes itself", "hangs"),
    "error": ("an error", "error {code}", "a 500 error", "an 'unexpected error' message"),
    "login": ("log in", "sign in", "login", "get in"),
    "password": ("password", "passcode"),
    "days": ("three days", "a week", "10 days", "two weeks", "five days"),
    "broken": ("broken", "not working", "busted"),
    "please": ("please", "pls", "kindly", ""),
    "today": ("today", "this morning", "since yesterday", "since the update"),
    "everyone": ("the whole team", "all 12 of us", "everyone in the office", "all our staff"),
    "report": ("report", "chart", "spreadsheet", "document"),
    "city": ("Lyon", "Leeds", "Austin", "Porto", "Gdansk", "Osaka"),
    "country": ("Norway", "Canada", "Ireland", "Mexico", "Japan"),
}

# kind -> topic -> phrasings. Problems state something wrong without stopping the customer altogether;
# blockers say they cannot use the service at all; questions ask or suggest with nothing wrong; context is
# background that names a topic without a problem in it.
POOLS: dict[Kind, dict[Category, tuple[str, ...]]] = {
    "problem": {
        "billing": (
            "I was {charged} {twice} for order {order}",
            "my {refund} for order {order} never showed up",
            "the {invoice} for {month} has the wrong VAT number on it",
            "you {charged} me {amount} but my plan costs less than that",
            "there's a payment of {amount} on my statement I don't recognise",
            "I cancelled last month and still got {charged} {amount}",
            "the {invoice} says {amount} but the checkout said something else",
            "I returned order {order} weeks ago and I'm still waiting for the {refund}",
            "my card was {charged} {amount} for an upgrade I never asked for",
            "the discount code was accepted but I was {charged} the full {amount}",
            "I got {charged} for a renewal after turning auto-renew off",
            "the {invoice} lists a seat we removed in {month}",
        ),
        "account": (
            "the two-factor codes arrive minutes too late",
            "I can't change the e-mail address on my profile, it keeps reverting",
            "the {password} reset link you send has already expired when I click it",
            "I keep getting signed out every few minutes",
            "my profile shows someone else's name",
            "I got a login alert from {city} that wasn't me",
            "I can't add my colleague as a second user on our account",
            "the 'delete my account' button does nothing",
            "my username changed by itself after the last {login}",
            "the security questions on my account are ones I never set",
            "I lost the phone with my authenticator and need to move 2FA to a new one",
            "my account still shows my old phone number after I changed it",
        ),
        "shipping": (
            "my {parcel} {order} hasn't arrived after {days}",
            "the tracking for {order} hasn't moved in {days}",
            "the {courier} left my {parcel} at the wrong address",
            "the box arrived crushed and the item inside is {broken}",
            "I received someone else's {parcel}, not order {order}",
            "order {order} says delivered but nothing is here",
            "half of order {order} is missing from the box",
            "the {courier} never rang, just left a card, and the depot is closed",
            "my {parcel} went to my old address at {street} even though I updated it",
            "the delivery was promised for {weekday} and it's now {days} late",
            "the wrong size came in order {order}",
            "the {parcel} is stuck in customs in {city} for {days}",
        ),
        "technical": (
            "the {app} {crashes} when I open a {report}",
            "I get {error} whenever I save a {report}",
            "the {app} is really slow {today}",
            "exporting to CSV gives {error}",
            "notifications stopped arriving {today}",
            "sync between my phone and laptop is {broken}",
            "the search in the {app} returns nothing for words I know are there",
            "images don't load in the {app} {today}",
            "the {report} shows numbers from last month, not this one",
            "the dark mode makes the text unreadable in the {app}",
            "uploading a file over 10 MB fails with {error}",
            "the calendar integration duplicates every event",
        ),
    },
    "blocker": {
        "billing": (
            "you suspended our service over the {invoice} I already paid, so we can't use anything",
            "my payment keeps getting declined and the whole service is locked until it goes through",
            "our subscription was cancelled by mistake after the charge failed and we're completely shut out",
        ),
        "account": (
            "I'm completely locked out of my account and can't {login} at all",
            "my account was hacked and the {password} changed, I can't get in at all",
            "{everyone} can't {login}, the login page just loops",
        ),
        "technical": (
            "the {app} won't open at all {today}, {everyone} is stuck",
            "the whole site is down for us, nothing loads",
            "every page gives {error} and we can't do any work",
        ),
    },
    "question": {
        "billing": (
            "do you accept PayPal or only cards",
            "can the {invoice} be made out to my company instead of me",
            "is there a yearly plan that's cheaper than paying monthly",
            "when exactly will I be {charged} for the next month",
            "can I pay by bank transfer",
            "do prices include VAT for customers in {country}",
        ),
        "account": (
            "how do I change the e-mail address on my account",
            "can two people share one account",
            "how do I turn on two-factor authentication",
            "is there a way to change my username",
            "how do I download all my account data",
            "can I have a separate login for my accountant",
        ),
        "shipping": (
            "do you ship to {country}",
            "how long does delivery to {country} usually take",
            "can I pick up my order at a store in {city} instead",
            "do you offer express delivery",
            "can I change the delivery address before my {parcel} ships",
            "which shipping company do you use for {country}",
        ),
        "technical": (
            "how do I export my data to CSV",
            "does the {app} work on Linux",
            "is there an API I can use to pull my {report}s",
            "can I use the {app} offline",
            "how do I connect the {app} to Google Calendar",
            "what's the largest file I can upload",
        ),
        "other": (
            "are you hiring in {city}",
            "I just wanted to say the new design looks great",
            "it would be nice to have a dark theme one day",
            "do you have an office in {city} I could visit",
            "could you add a way to share lists with friends",
            "who should I talk to about a partnership",
            "your support team was lovely last time, thanks",
            "do you sponsor local events",
        ),
    },
    "context": {
        "billing": (
            "I paid by card as usual",
            "the subscription itself is fine",
            "I've been on the yearly plan since {year}",
        ),
        "account": (
            "I'm signed in on my phone",
            "my account is under my work e-mail",
            "I logged in fine this morning",
        ),
        "shipping": (
            "I ordered a few things last week",
            "my last delivery came on time",
            "I usually get my orders at work",
        ),
        "technical": (
            "I'm on the latest version of the {app}",
            "I mostly use the {app} on my laptop",
            "I restarted everything already",
        ),
    },
}

# Topic-free clues: the rules read them whatever the topic.
GENERIC_BLOCKERS = (
    "Right now we cannot use the service at all.",
    "Nothing works for us, we are completely stopped.",
    "We can't use any of it until this is sorted.",
    "This has stopped our business entirely.",
)
THREATS = (
    "If this isn't fixed by {weekday} I'm talking to my lawyer.",
    "I will dispute the payment with my bank if I don't hear back.",
    "Expect a chargeback if this isn't resolved.",
    "My solicitor will be in touch if this carries on.",
    "I'm ready to take legal action over this.",
)

OPENINGS = (
    "Hi,",
    "Hello,",
    "hey",
    "Hi there!",
    "Good morning,",
    "Dear Sir or Madam,",
    "Dear support team,",
    "To whom it may concern,",
    "Hello, this is {fullname}.",
    "Hi, {first} here.",
    "yo",
    "Morning all,",
)
CLOSINGS = (
    "Thanks,\n{fullname}",
    "Kind regards,\n{fullname}\n{phone}",
    "cheers, {first}",
    "-- {first} ({email})",
    "Thank you in advance.",
    "Best,\n{fullname}\n{email}",
    "Regards, {fullname}, tel. {phone}",
    "Sent from my phone",
    "thx",
    "Yours faithfully,\n{fullname}",
    "Please reply to {email}.",
    "You can call me on {phone}.",
)
# Sentences with no clue in them: length and realism without changing the label.
FILLERS = (
    "I've been a customer for years.",
    "This is the second time I'm writing about this.",
    "Sorry if this is the wrong place to ask.",
    "I hope you can help.",
    "My colleague {first} suggested I write to you.",
    "I looked in the help pages first.",
    "Let me know if you need anything else from me.",
    "It's been a long week.",
    "My details: {fullname}, {email}.",
    "Best number to reach me is {phone}.",
    "Happy to jump on a call.",
    "Thanks for reading.",
)
# Contact details people add; with the closings and fillers, most tickets carry an e-mail or a phone number.
CONTACTS = (
    "My e-mail is {email} and my number is {phone}.",
    "I live at {street}, {city}, if that helps.",
    "Call me back on {phone} please.",
    "Contact: {phone} / {email}",
    "Reach me at {email}.",
    "Letters reach me at {street}.",
    "Mobile: {phone}",
)
ANGRY = (
    "This is ridiculous!",
    "I am SO fed up.",
    "Honestly, unbelievable.",
    "What is going on with you people?",
    "Not impressed.",
)
JOINS_SECOND = ("Also, ", "And ", "Another thing: ", "On top of that, ", "Separately, ", "Oh and ")
JOINS_CONTEXT = ("", "For what it's worth, ", "Just so you know, ", "FYI ")

FIRST_NAMES = (
    "Ana", "Bo", "Chen", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ines", "Jonas", "Kemal", "Lucia",
    "Mateo", "Nadia", "Oren", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf",
)  # fmt: skip
LAST_NAMES = (
    "Almeida", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Nakamura", "O'Brien", "Patel", "Rossi", "Schmidt", "Tanaka", "Novak",
)  # fmt: skip
DOMAINS = ("example.com", "mail.example.org", "example.net", "corp.example.co.uk", "example.de")
STREETS = ("Baker Street", "Elm Avenue", "Harbour Road", "Mill Lane", "Station Road", "Park Drive")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
MONTHS = ("January", "March", "April", "June", "September", "November")
# Phone numbers as people write them: international, US, UK and French national forms.
PHONE_FORMATS = (
    "+44 20 7946 {d4}",
    "+1 415 555 {d4}",
    "({d3}) 555-{d4}",
    "{d3}-555-{d4}",
    "07700 9{d2}{d3}",
    "06 {d2} {d2} {d2} {d2}",
    "+33 6 {d2} {d2} {d2} {d2}",
    "+49 30 {d3}{d4}",
)


def held_out(index: int) -> bool:
    """Every third phrasing of a pool belongs to the eval split only."""
    return index % 3 == 2
