#!/usr/bin/env python3
"""A real X11 drag source for the app's end-to-end test (docs/ARCHITECTURE.md, "Testing").

Shows a small GTK window at the top-left corner that offers the files given on the command line
as text/uri-list when dragged. The test presses the mouse on it and releases it over the app
window with xdotool, so the app receives a genuine OS drop. Prints "ready" once mapped.
"""
import sys

import gi

gi.require_version("Gtk", "3.0")
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk, GLib, Gtk  # noqa: E402

uris = [GLib.filename_to_uri(p, None) for p in sys.argv[1:]]

window = Gtk.Window(title="shoal-drag-source")
window.set_default_size(160, 120)
window.move(0, 0)
button = Gtk.Button(label="drag me")
button.drag_source_set(Gdk.ModifierType.BUTTON1_MASK, [], Gdk.DragAction.COPY)
button.drag_source_add_uri_targets()


def on_drag_data_get(_widget, _context, data, _info, _time):
    data.set_uris(uris)


def on_map(_widget):
    print("ready", flush=True)


button.connect("drag-data-get", on_drag_data_get)
window.connect("map-event", lambda w, e: on_map(w))
window.connect("destroy", Gtk.main_quit)
window.add(button)
window.show_all()
Gtk.main()
