"""Made-up people and audiences, the same every time for the same handle.

Every value is drawn from a `random.Random` seeded with a sha256 of the network and the handle
(lower-cased: X and Instagram handles are case-insensitive), so answers survive restarts and
differ between machines only if this file does. Pure functions, no I/O.

Follower counts are log-distributed and skewed towards small accounts: about half have fewer
than 1,000 followers, and every influence tier up to mega (>= 1M) turns up in a few hundred
handles.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Place:
    city: str
    region: str
    region_code: str
    country: str  # the name, as the Graph API and FullContact spell it
    country_code: str  # ISO 3166-1 alpha-2
    latitude: float
    longitude: float

    @property
    def formatted(self) -> str:
        return f"{self.city}, {self.region}, {self.country}"


PLACES = (
    Place("Paris", "Île-de-France", "IDF", "France", "FR", 48.8566, 2.3522),
    Place("Lyon", "Auvergne-Rhône-Alpes", "ARA", "France", "FR", 45.7640, 4.8357),
    Place("Marseille", "Provence-Alpes-Côte d'Azur", "PAC", "France", "FR", 43.2965, 5.3698),
    Place("Bordeaux", "Nouvelle-Aquitaine", "NAQ", "France", "FR", 44.8378, -0.5792),
    Place("London", "England", "ENG", "United Kingdom", "GB", 51.5072, -0.1276),
    Place("Manchester", "England", "ENG", "United Kingdom", "GB", 53.4808, -2.2426),
    Place("Berlin", "Berlin", "BE", "Germany", "DE", 52.5200, 13.4050),
    Place("Munich", "Bavaria", "BY", "Germany", "DE", 48.1351, 11.5820),
    Place("Madrid", "Community of Madrid", "MD", "Spain", "ES", 40.4168, -3.7038),
    Place("Barcelona", "Catalonia", "CT", "Spain", "ES", 41.3874, 2.1686),
    Place("Brussels", "Brussels-Capital", "BRU", "Belgium", "BE", 50.8503, 4.3517),
    Place("New York", "New York", "NY", "United States", "US", 40.7128, -74.0060),
    Place("Los Angeles", "California", "CA", "United States", "US", 34.0522, -118.2437),
    Place("Montréal", "Quebec", "QC", "Canada", "CA", 45.5019, -73.5674),
    Place("Toronto", "Ontario", "ON", "Canada", "CA", 43.6532, -79.3832),
)

FIRST_NAMES = (
    "Camille", "Léa", "Manon", "Chloé", "Inès", "Hugo", "Lucas", "Louis", "Gabriel", "Jules",
    "Emma", "Olivia", "Amelia", "Oliver", "George", "Harry", "Mia", "Sofia", "Lukas", "Felix",
    "Lucía", "Martina", "Pablo", "Alejandro", "Ava", "Ethan", "Noah", "Chloe", "William", "Zoé",
)
LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Lefebvre", "Girard", "Roux", "Fontaine",
    "Smith", "Jones", "Taylor", "Brown", "Wilson", "Müller", "Schmidt", "Schneider", "Fischer",
    "García", "Fernández", "López", "Martínez", "Johnson", "Williams", "Miller", "Tremblay",
    "Gagnon", "Roy", "Côté", "Nguyen",
)

# (title, organization kinds, Facebook Page category)
PROFESSIONS = (
    ("Chef", ("Bistro", "Kitchen", "Table"), "Chef"),
    ("Software Engineer", ("Labs", "Technologies", "Software"), "Software Company"),
    ("Product Designer", ("Studio", "Design", "Labs"), "Designer"),
    ("Tennis Coach", ("Tennis Club", "Sports Academy"), "Coach"),
    ("Personal Trainer", ("Fitness", "Gym", "Training"), "Fitness Trainer"),
    ("Photographer", ("Photography", "Studio"), "Photographer"),
    ("Marketing Manager", ("Group", "Agency", "Brands"), "Marketing Agency"),
    ("Fashion Stylist", ("Atelier", "Style", "Boutique"), "Fashion Designer"),
    ("Journalist", ("Media", "News", "Magazine"), "Journalist"),
    ("Musician", ("Records", "Music", "Sound"), "Musician/Band"),
    ("Teacher", ("School", "Academy"), "Education"),
    ("Nurse", ("Hospital", "Health", "Clinic"), "Health/Beauty"),
    ("Architect", ("Architects", "Design"), "Architectural Designer"),
    ("Entrepreneur", ("Ventures", "Partners", "Group"), "Entrepreneur"),
    ("Travel Blogger", ("Travels", "Journeys"), "Blogger"),
    ("Student", ("University",), "Personal Blog"),
)

# FullContact's interest names (title case, as its Insights Bundle spells them).
INTERESTS = (
    "Tennis", "Running", "Cooking", "Travel", "Fashion", "Technology", "Football", "Music",
    "Photography", "Yoga", "Cycling", "Gaming", "Wine", "Art", "Reading", "Hiking",
)
AGE_RANGES = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 75))
AGE_WEIGHTS = (18, 30, 24, 14, 9, 5)


def rng_for(network: str, handle: str) -> random.Random:
    """The random stream for one handle on one network; the same handle gives the same stream."""
    digest = hashlib.sha256(f"{network}\x00{handle.strip().lstrip('@').lower()}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def is_unknown(handle: str) -> bool:
    """Handles the sandbox answers as not found, so a demo can show a `not_found` provider."""
    return handle.strip().lstrip("@").lower().startswith("unknown")


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10 ** (count - 1), 10**count))


@dataclass(frozen=True)
class Persona:
    first_name: str
    last_name: str
    place: Place
    age: int
    age_range: str  # "25-34"
    title: str
    organization: str
    organization_domain: str
    page_category: str
    interests: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @property
    def bio(self) -> str:
        return f"{self.title} in {self.place.city}. {', '.join(self.interests[:3])}."


def persona(network: str, handle: str) -> Persona:
    """Who is behind a handle. FullContact asked about an X username gets the X account's person."""
    rng = rng_for(f"person/{network}", handle)
    low, high = rng.choices(AGE_RANGES, weights=AGE_WEIGHTS)[0]
    title, kinds, category = rng.choice(PROFESSIONS)
    last_name = rng.choice(LAST_NAMES)
    organization = f"{rng.choice(LAST_NAMES)} {rng.choice(kinds)}"
    if title == "Student":
        organization = f"University of {rng.choice(PLACES).city}"
    domain = "".join(c for c in organization.lower() if c.isascii() and c.isalnum()) + ".example"
    return Persona(
        first_name=rng.choice(FIRST_NAMES),
        last_name=last_name,
        place=rng.choice(PLACES),
        age=rng.randint(low, high),
        age_range=f"{low}-{high}",
        title=title,
        organization=organization,
        organization_domain=domain,
        page_category=category,
        interests=tuple(rng.sample(INTERESTS, rng.randint(2, 5))),
    )


@dataclass(frozen=True)
class Audience:
    followers: int
    following: int
    posts: int
    listed: int
    likes: int
    created_at: datetime


def audience(network: str, handle: str) -> Audience:
    """An account's counts. log10(followers) = 1.3 + 5.7 * u**2 (u uniform): mostly small
    accounts, a long tail up to about 10M."""
    rng = rng_for(f"audience/{network}", handle)
    followers = int(10 ** (1.3 + 5.7 * rng.random() ** 2))
    if followers < 5_000 and rng.random() < 0.15:
        # a follow-for-follow account: follows more people than follow it
        following = int(followers * rng.uniform(1.5, 4.0)) + 20
    else:
        following = int(10 ** rng.uniform(1.7, 3.4))
    created_at = datetime(2008, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(16 * 365 * 86_400))
    return Audience(
        followers=followers,
        following=following,
        posts=int(10 ** rng.uniform(1.3, 4.3)),
        listed=followers // rng.randint(60, 600),
        likes=int(10 ** rng.uniform(1.5, 4.8)),
        created_at=created_at,
    )


def account_id(network: str, handle: str, digits: int, prefix: str = "") -> str:
    """The provider's numeric id for an account, stable per handle."""
    return prefix + _digits(rng_for(f"id/{network}", handle), digits - len(prefix))
