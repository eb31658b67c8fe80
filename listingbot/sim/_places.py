"""Reference data the market draws from: real cities with real ZIP codes or postcode
districts and their coordinates, street names, people and firms."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UsCity:
    name: str
    state: str
    lat: float
    lng: float
    zips: tuple[str, ...]
    area_code: str
    price_factor: float  # relative to a national middle; scales generated prices


US_CITIES: tuple[UsCity, ...] = (
    UsCity(
        "New York",
        "NY",
        40.7484,
        -73.9857,
        ("10001", "10011", "10013", "10019", "10023", "10128"),
        "212",
        1.9,
    ),
    UsCity(
        "Brooklyn",
        "NY",
        40.6782,
        -73.9442,
        ("11201", "11211", "11215", "11217", "11238"),
        "718",
        1.5,
    ),
    UsCity("Astoria", "NY", 40.7644, -73.9235, ("11101", "11102", "11103", "11105"), "718", 1.2),
    UsCity("Buffalo", "NY", 42.8864, -78.8784, ("14201", "14209", "14213", "14222"), "716", 0.45),
    UsCity("Yonkers", "NY", 40.9312, -73.8988, ("10701", "10704", "10705"), "914", 0.9),
    UsCity(
        "Jersey City", "NJ", 40.7178, -74.0431, ("07302", "07304", "07306", "07310"), "201", 1.2
    ),
    UsCity("Hoboken", "NJ", 40.7440, -74.0324, ("07030",), "201", 1.4),
    UsCity("Newark", "NJ", 40.7357, -74.1724, ("07102", "07104", "07105", "07107"), "973", 0.7),
    UsCity("Princeton", "NJ", 40.3573, -74.6672, ("08540", "08542"), "609", 1.3),
    UsCity("Montclair", "NJ", 40.8259, -74.2090, ("07042", "07043"), "973", 1.1),
    UsCity(
        "Los Angeles",
        "CA",
        34.0522,
        -118.2437,
        ("90012", "90026", "90027", "90034", "90049"),
        "213",
        1.7,
    ),
    UsCity(
        "San Francisco",
        "CA",
        37.7749,
        -122.4194,
        ("94103", "94110", "94114", "94117", "94122"),
        "415",
        2.0,
    ),
    UsCity("San Diego", "CA", 32.7157, -117.1611, ("92101", "92103", "92104", "92109"), "619", 1.4),
    UsCity("Oakland", "CA", 37.8044, -122.2712, ("94606", "94610", "94611", "94618"), "510", 1.3),
    UsCity("San Jose", "CA", 37.3382, -121.8863, ("95112", "95125", "95126"), "408", 1.6),
    UsCity("Austin", "TX", 30.2672, -97.7431, ("78701", "78702", "78704", "78745"), "512", 0.95),
    UsCity("Houston", "TX", 29.7604, -95.3698, ("77002", "77006", "77019", "77098"), "713", 0.7),
    UsCity("Dallas", "TX", 32.7767, -96.7970, ("75201", "75204", "75206", "75214"), "214", 0.8),
    UsCity("San Antonio", "TX", 29.4241, -98.4936, ("78204", "78209", "78212"), "210", 0.6),
    UsCity("Miami", "FL", 25.7617, -80.1918, ("33125", "33130", "33131", "33137"), "305", 1.2),
    UsCity("Orlando", "FL", 28.5383, -81.3792, ("32801", "32803", "32806"), "407", 0.7),
    UsCity("Tampa", "FL", 27.9506, -82.4572, ("33602", "33606", "33609"), "813", 0.75),
    UsCity(
        "Seattle",
        "WA",
        47.6062,
        -122.3321,
        ("98101", "98103", "98107", "98112", "98122"),
        "206",
        1.4,
    ),
    UsCity("Tacoma", "WA", 47.2529, -122.4443, ("98402", "98403", "98406"), "253", 0.8),
    UsCity("Bellevue", "WA", 47.6101, -122.2015, ("98004", "98006"), "425", 1.7),
    UsCity(
        "Chicago",
        "IL",
        41.8781,
        -87.6298,
        ("60601", "60614", "60618", "60622", "60657"),
        "312",
        0.9,
    ),
    UsCity("Evanston", "IL", 42.0451, -87.6877, ("60201", "60202"), "847", 1.0),
    UsCity(
        "Boston", "MA", 42.3601, -71.0589, ("02108", "02116", "02118", "02127", "02130"), "617", 1.6
    ),
    UsCity("Cambridge", "MA", 42.3736, -71.1097, ("02138", "02139", "02140"), "617", 1.7),
    UsCity("Somerville", "MA", 42.3876, -71.0995, ("02143", "02144", "02145"), "617", 1.3),
)


@dataclass(frozen=True)
class UkTown:
    name: str
    county: str
    lat: float
    lng: float
    districts: tuple[str, ...]  # outward codes of real postcode districts in the town
    rent_factor: float


UK_TOWNS: tuple[UkTown, ...] = (
    UkTown(
        "London",
        "Greater London",
        51.5145,
        -0.0900,
        ("EC1A", "EC2M", "EC4M", "W1T", "WC2H", "SE1", "N1", "E1"),
        2.4,
    ),
    UkTown("Manchester", "Greater Manchester", 53.4808, -2.2426, ("M1", "M2", "M3", "M4"), 1.1),
    UkTown("Birmingham", "West Midlands", 52.4862, -1.8904, ("B1", "B2", "B3", "B4"), 1.0),
    UkTown("Leeds", "West Yorkshire", 53.8008, -1.5491, ("LS1", "LS2", "LS11"), 0.95),
    UkTown("Bristol", "Bristol", 51.4545, -2.5879, ("BS1", "BS2", "BS8"), 1.1),
    UkTown("Edinburgh", "City of Edinburgh", 55.9533, -3.1883, ("EH1", "EH2", "EH3"), 1.1),
    UkTown("Glasgow", "Glasgow City", 55.8642, -4.2518, ("G1", "G2", "G3"), 0.9),
    UkTown("Cardiff", "Cardiff", 51.4816, -3.1791, ("CF10", "CF11"), 0.85),
    UkTown("Reading", "Berkshire", 51.4543, -0.9781, ("RG1", "RG2"), 1.2),
    UkTown("Cambridge", "Cambridgeshire", 52.2053, 0.1218, ("CB1", "CB2", "CB4"), 1.4),
    UkTown("Oxford", "Oxfordshire", 51.7520, -1.2577, ("OX1", "OX2", "OX4"), 1.3),
    UkTown("Milton Keynes", "Buckinghamshire", 52.0406, -0.7594, ("MK9", "MK10"), 0.9),
)

US_STREETS: tuple[str, ...] = (
    "Maple", "Oak", "Cedar", "Elm", "Pine", "Washington", "Lincoln", "Park", "Lake",
    "Hill", "Sunset", "Highland", "Madison", "Jefferson", "Franklin", "Willow", "Church",
    "Spring", "River", "Prospect", "Union", "Chestnut", "Walnut", "Broad", "Grand",
    "Linden", "Bedford", "Atlantic", "Summit", "Valley",
)  # fmt: skip
US_SUFFIXES: tuple[str, ...] = ("St", "Ave", "Rd", "Blvd", "Dr", "Ln", "Pl", "Ct", "Way", "Ter")

UK_STREETS: tuple[str, ...] = (
    "King Street", "Queen Street", "High Street", "Church Road", "Station Road",
    "Victoria Street", "Market Street", "Bridge Street", "Mill Lane", "Castle Street",
    "George Street", "Princess Street", "Albert Road", "Park Row", "Wellington Place",
    "Old Street", "Commercial Road", "Whitehall Road", "Canal Street", "Temple Way",
)  # fmt: skip
UK_BUILDINGS: tuple[str, ...] = (
    "The Foundry", "Carver House", "The Mill", "Exchange Court", "Riverside House",
    "Albion Works", "The Tannery", "Kingsway House", "Cotton Exchange", "The Granary",
    "Phoenix Yard", "Station Works", "Victoria House", "Minerva House", "The Forge",
)  # fmt: skip

FIRST_NAMES: tuple[str, ...] = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Elijah", "Sophia", "James", "Isabella",
    "Lucas", "Mia", "Mason", "Amelia", "Ethan", "Harper", "Logan", "Evelyn", "Aiden",
    "Priya", "Wei", "Carlos", "Fatima", "Kenji", "Aisha",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Wilson", "Anderson", "Thomas",
    "Taylor", "Moore", "Patel", "Nguyen", "Kim", "Chen", "O'Brien", "Okafor", "Kowalski",
)  # fmt: skip

US_BROKERS: tuple[tuple[str, str], ...] = (
    ("Hudson & Pine Realty", "hudsonpine.com"),
    ("Bayside Realty Group", "baysiderealty.com"),
    ("Lone Star Homes", "lonestarhomes.com"),
    ("Emerald City Properties", "emeraldcityprops.com"),
    ("Windy City Realty", "windycityrealty.com"),
    ("Beacon Hill Partners", "beaconhillpartners.com"),
    ("Golden Gate Homes", "goldengatehomes.com"),
    ("Sunshine Coastal Realty", "sunshinecoastal.com"),
    ("Garden State Brokers", "gardenstatebrokers.com"),
)

UK_OFFICES: tuple[str, ...] = (
    "London",
    "Manchester",
    "Birmingham",
    "Leeds",
    "Bristol",
    "Edinburgh",
)


def us_zip_codes(*states: str) -> tuple[str, ...]:
    """Every ZIP code the market draws from in ``states`` (all states when none given)."""
    wanted = {s.upper() for s in states}
    return tuple(
        sorted(z for city in US_CITIES if not wanted or city.state in wanted for z in city.zips)
    )


def _territory_id(city: UsCity) -> str:
    return f"{city.name.lower().replace(' ', '-')}-{city.state.lower()}"


# Kotohomes' predefined territories (later docs: "a predefined territory id"); the
# simulator's are its cities, by id, each the set of that city's ZIP codes.
TERRITORIES: dict[str, frozenset[str]] = {
    _territory_id(city): frozenset(city.zips) for city in US_CITIES
}
