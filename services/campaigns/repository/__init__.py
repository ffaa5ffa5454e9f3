"""campaigns' SQL, one module per aggregate; parameters always bound."""
