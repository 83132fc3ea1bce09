"""The Textual dashboard: subscribes to one or more monitors' event buses.

- `state`: what the dashboard knows about each bed, rebuilt from bus events (pure, no Textual);
- `widgets`: the tiles, banner and tables that draw that state;
- `review`: the episode review screen (`crywatch review`, or **r** on the dashboard);
- `logs`: log records held while the screen is up;
- `app`: the dashboard itself, acknowledging alarms over each monitor's control channel.
"""
