"""MQTT with Home Assistant discovery (the `mqtt:` config section; off when absent).

config.py reads the section and holds no third-party import, so loading a config without
`mqtt:` never imports paho; client.py (the `pv-mqtt` thread) is imported by app.build only
when the section is there.
"""
