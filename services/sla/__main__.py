from services.sla.wiring import main

main()
