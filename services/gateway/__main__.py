from services.gateway.wiring import main

main()
