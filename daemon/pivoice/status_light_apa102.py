"""The status light on APA102 ("DotStar") LEDs over SPI0: the LED rings of common voice HATs
(ReSpeaker 2-mic: 3 LEDs; Adafruit Voice Bonnet: 3 LEDs).

Built on gpiozero's `SPIDevice` (hardware SPI through the pin factory on a Pi, gpiozero's software
SPI elsewhere), so it needs no library beyond gpiozero and is tested with gpiozero's MockFactory
and its `MockSPIDevice` on the receiving side. Every state is a steady colour on all LEDs: an
APA102 holds its colour by itself, so no thread runs for any state (thinking and error are told
apart from listening and speaking by colour; the error shows for a few seconds, status_light.py).

The wire format (APA102 datasheet): a start frame of 32 zero bits; per LED 0b111 + a 5-bit global
brightness, then blue, green, red; an end frame of at least count/2 one bits to clock the data
through the chain.

Thread: `show` from the controller thread or the status light's error timer (status_light.py
orders them); built and closed on the main thread.
"""

from __future__ import annotations

from gpiozero import SPIDevice

from pivoice.status_light import RgbLedDriver


class Apa102(SPIDevice):
    """A chain of `count` APA102 LEDs on SPI0 (MOSI GPIO10, SCLK GPIO11)."""

    def __init__(self, count: int, *, device: int = 0, pin_factory=None) -> None:
        super().__init__(port=0, device=device, pin_factory=pin_factory)
        self.count = count

    def frame(self, colour: tuple[float, float, float]) -> list[int]:
        """The bytes that set every LED to `colour` (0..1 per channel, full global brightness:
        dimming by the 8-bit channels keeps the colour's hue at low levels)."""
        r, g, b = (max(0, min(255, round(255 * c))) for c in colour)
        end_bytes = max(4, (self.count + 15) // 16)
        return [0] * 4 + [0xE0 | 31, b, g, r] * self.count + [0xFF] * end_bytes

    def set(self, colour: tuple[float, float, float]) -> None:
        self._spi.write(self.frame(colour))


class Apa102Driver:
    COLOURS = RgbLedDriver.COLOURS

    def __init__(self, leds: Apa102, brightness: float = 1.0) -> None:
        self.leds, self.brightness = leds, brightness

    def colour(self, state: str) -> tuple[float, float, float]:
        return tuple(round(c * self.brightness, 4) for c in self.COLOURS[state])

    def show(self, state: str) -> None:
        self.leds.set(self.colour(state))

    def close(self) -> None:
        try:
            self.leds.set((0.0, 0.0, 0.0))   # the LEDs keep their last colour after we let go
        finally:
            self.leds.close()
