from services.hotspots.wiring import main

main()
